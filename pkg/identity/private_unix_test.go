//go:build !windows

package identity

import (
	"os"
	"testing"
)

// assertPrivate checks that only the owner may open path: mode 0700 for the
// state dir, 0600 for the key file.
func assertPrivate(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	want := os.FileMode(0o600)
	if st.IsDir() {
		want = 0o700
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s has mode %04o, want %04o", path, st.Mode().Perm(), want)
	}
}

func exposures() []exposure {
	chmod := func(mode os.FileMode) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	return []exposure{
		{"group readable", chmod(0o640), "mode 0640"},
		{"world readable", chmod(0o604), "mode 0604"},
	}
}

func tempDir(t *testing.T) string { return t.TempDir() }
