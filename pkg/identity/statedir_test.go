package identity

import (
	"fmt"
	"runtime"
	"testing"
)

func TestDefaultDir(t *testing.T) {
	type env map[string]string
	tests := []struct {
		goos string
		env  env
		want string
	}{
		{"linux", env{"XDG_STATE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/p2pd"},
		{"linux", env{"XDG_STATE_HOME": "relative", "HOME": "/home/u"}, "/home/u/.local/state/p2pd"},
		{"linux", env{"XDG_STATE_HOME": "", "HOME": "/home/u"}, "/home/u/.local/state/p2pd"},
		{"darwin", env{"HOME": "/Users/u"}, "/Users/u/Library/Application Support/p2pd"},
		{"windows", env{"LOCALAPPDATA": `C:\Users\u\AppData\Local`}, `C:\Users\u\AppData\Local\p2pd`},
		{"windows", env{"LOCALAPPDATA": "", "USERPROFILE": `C:\Users\u`}, `C:\Users\u\AppData\Local\p2pd`},
	}
	ran := false
	for _, tc := range tests {
		if tc.goos != runtime.GOOS {
			continue
		}
		ran = true
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := DefaultDir(); got != tc.want {
				t.Fatalf("DefaultDir() = %q, want %q", got, tc.want)
			}
		})
	}
	if !ran {
		t.Skipf("no expectations for %s", runtime.GOOS)
	}
}
