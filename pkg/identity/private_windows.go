package identity

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows a file mode says nothing about who may read a file; its
// access list (DACL) does. The state dir and key file are created with a
// protected DACL (no entries inherited from the parent) that grants only
// the current user full control, in one step, so no other account can open
// a handle in between.

// currentUser is the SID of the user the process runs as.
func currentUser() (*windows.SID, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("identity: current user: %w", err)
	}
	return tu.User.Sid, nil
}

// ownerOnly returns security attributes with a protected DACL granting the
// current user full access; inherit makes files created inside (the state
// dir's children) get the same entry.
func ownerOnly(inherit bool) (*windows.SecurityAttributes, error) {
	user, err := currentUser()
	if err != nil {
		return nil, err
	}
	flags := ""
	if inherit {
		flags = "OICI" // object and container inherit
	}
	sd, err := windows.SecurityDescriptorFromString("D:P(A;" + flags + ";FA;;;" + user.String() + ")")
	if err != nil {
		return nil, fmt.Errorf("identity: security descriptor: %w", err)
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	return sa, nil
}

// makePrivateDir creates dir with an owner-only DACL (parents as usual);
// an existing dir is left as it is.
func makePrivateDir(dir string) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	sa, err := ownerOnly(true)
	if err != nil {
		return err
	}
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return err
	}
	if err := windows.CreateDirectory(p, sa); err != nil {
		if errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			return nil // made by a concurrent start: leave it as it is
		}
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return nil
}

// createPrivate creates a new temporary file in dir whose DACL grants only
// the current user access, set when the file is created.
func createPrivate(dir string) (*os.File, error) {
	sa, err := ownerOnly(false)
	if err != nil {
		return nil, err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := filepath.Join(dir, ".node.key."+hex.EncodeToString(rnd[:]))
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, sa, windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: err}
	}
	return os.NewFile(uintptr(h), name), nil
}

// checkPrivate refuses a key file whose DACL is missing or lets anyone but
// its user, SYSTEM or the Administrators group open it.
func checkPrivate(f *os.File, _ fs.FileInfo, path string) error {
	sd, err := windows.GetSecurityInfo(windows.Handle(f.Fd()), windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("identity: load: reading the access list of %s: %w", path, err)
	}
	return checkDACL(sd, path)
}

// checkDACL is checkPrivate's rule for one security descriptor.
func checkDACL(sd *windows.SECURITY_DESCRIPTOR, path string) error {
	fix := fmt.Sprintf(`it holds a private key and must be readable by its owner only (run: icacls "%s" /inheritance:r /grant:r "%%USERNAME%%:F")`, path)
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		return fmt.Errorf("%w: %s has no access list, so everyone may open it; %s", ErrKeyFile, path, fix)
	}
	user, err := currentUser()
	if err != nil {
		return err
	}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("identity: load: access list of %s: %w", path, err)
		}
		if ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0 || ace.Header.AceType == windows.ACCESS_DENIED_ACE_TYPE {
			continue // applies to children only, or takes access away
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			return fmt.Errorf("%w: %s has an access entry of type %d this check does not understand; %s", ErrKeyFile, path, ace.Header.AceType, fix)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if ace.Mask == 0 || sid.Equals(user) || sid.IsWellKnown(windows.WinLocalSystemSid) || sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) {
			continue
		}
		return fmt.Errorf("%w: %s grants access to %s; %s", ErrKeyFile, path, accountName(sid), fix)
	}
	return nil
}

// accountName is DOMAIN\name for sid, or its string form.
func accountName(sid *windows.SID) string {
	account, domain, _, err := sid.LookupAccount("")
	switch {
	case err != nil:
		return sid.String()
	case domain != "":
		return domain + `\` + account
	default:
		return account
	}
}
