package identity

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// fileAllAccess is FILE_ALL_ACCESS, what SDDL calls FA.
const fileAllAccess = windows.STANDARD_RIGHTS_REQUIRED | windows.SYNCHRONIZE | 0x1ff

// assertPrivate checks that only the user (and SYSTEM/Administrators) may
// open path, and for the key file that its DACL is protected and has one
// entry, full access for the user. (Wine reports a directory's DACL from its
// Unix mode, with SYSTEM added, whatever it was created with, unless the
// file system keeps Wine's security xattrs; so the exact shape is checked
// on Windows only, for the key file.)
func assertPrivate(t *testing.T, path string) {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDACL(sd, path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || underWine() {
		return
	}
	ctl, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if ctl&windows.SE_DACL_PROTECTED == 0 {
		t.Errorf("%s: DACL inherits from the parent (%s)", path, sd)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("%s: no DACL: %v", path, err)
	}
	user, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	if dacl.AceCount != 1 {
		t.Fatalf("%s: %d access entries, want 1 (%s)", path, dacl.AceCount, sd)
	}
	var ace *windows.ACCESS_ALLOWED_ACE
	if err := windows.GetAce(dacl, 0, &ace); err != nil {
		t.Fatal(err)
	}
	sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
	if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE || !sid.Equals(user) || ace.Mask&fileAllAccess != fileAllAccess {
		t.Errorf("%s: access list %s, want full access for %s only", path, sd, user)
	}
}

func exposures() []exposure {
	// setDACL replaces the file's DACL with the one in SDDL (USER stands
	// for the current user's SID); "" sets a NULL DACL (no access control).
	setDACL := func(sddl string) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			var dacl *windows.ACL
			if sddl != "" {
				user, err := currentUser()
				if err != nil {
					t.Fatal(err)
				}
				sd, err := windows.SecurityDescriptorFromString(strings.ReplaceAll(sddl, "USER", user.String()))
				if err != nil {
					t.Fatal(err)
				}
				if dacl, _, err = sd.DACL(); err != nil {
					t.Fatal(err)
				}
			}
			err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
				windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return []exposure{
		{"everyone may read", setDACL("D:P(A;;FA;;;USER)(A;;FR;;;WD)"), "grants access to"},
		{"users group may write", setDACL("D:P(A;;FA;;;USER)(A;;FW;;;BU)"), "grants access to"},
		// A NULL DACL: Windows reports no access list, Wine an entry for Everyone.
		{"no access control", setDACL(""), "it holds a private key"},
	}
}

// underWine reports whether the test runs under Wine (its ntdll exports
// wine_get_version).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// tempDir is t.TempDir, except under Wine, whose missing
// FileDispositionInformationEx makes os.RemoveAll (and so t.TempDir's
// cleanup) fail with "Invalid function": there the tree is removed entry by
// entry with os.Remove, which works.
func tempDir(t *testing.T) string {
	if !underWine() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "identity-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var paths []string
		_ = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			paths = append(paths, p)
			return err
		})
		for i := len(paths) - 1; i >= 0; i-- {
			if err := os.Remove(paths[i]); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return dir
}
