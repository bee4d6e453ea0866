// Package winetest runs Windows builds of the project under Wine, so a Linux
// machine can test the Windows agent: it makes a throw-away Wine prefix per
// test and runs programs in it.
//
// Skip rules: on a host other than linux/amd64 (Debian's wine64 runs Windows
// amd64 programs on amd64 only) and in -short mode the test is skipped; a
// missing wine, or missing MinGW binutils where Wine needs the shim below, is
// testenv's skip, which CI=true turns into a failure (scripts/deps.sh
// installs both on amd64).
//
// Two gaps between Wine 8 (Debian 12) and Go 1.26's Windows port, found here
// and worked around or documented (docs/platforms.md):
//   - Go's runtime needs ProcessPrng from bcryptprimitives.dll, which Wine
//     ships from 9.0 on. Where the prefix lacks it, New links a DLL whose one
//     export forwards ProcessPrng to advapi32's SystemFunction036
//     (RtlGenRandom: the same two arguments; it returns a BOOLEAN where
//     ProcessPrng returns a BOOL, and Go's runtime reads only the low byte).
//   - Go sets SIO_UDP_NETRESET on every UDP socket, which Wine does not
//     implement, so a Windows Go program cannot open UDP sockets under Wine.
//     TCP works.
package winetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/p2pd-go/p2pd/internal/testenv"
)

// Prefix is a Wine prefix (a fake C: drive and registry) made for one test.
type Prefix struct {
	Dir  string
	wine string
	env  []string
}

// shimDef is the module definition of the ProcessPrng forwarder.
const shimDef = `LIBRARY bcryptprimitives.dll
EXPORTS
ProcessPrng=advapi32.SystemFunction036
`

// New makes a Wine prefix in a temporary directory and stops its
// wineserver (and every program still running in it) when the test ends.
func New(t *testing.T) *Prefix {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("winetest: Wine runs Windows amd64 programs on linux/amd64 hosts only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	tools := testenv.RequireTools(t, "wine", "wineserver", "winepath")
	p := &Prefix{Dir: filepath.Join(t.TempDir(), "prefix"), wine: tools[0]}
	p.env = append(os.Environ(),
		"WINEPREFIX="+p.Dir,
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=mscoree,mshtml=", // no Mono/Gecko install prompts
		"DISPLAY=",                         // headless
	)
	t.Cleanup(func() {
		kill := exec.Command(tools[1], "-k")
		kill.Env = p.env
		_ = kill.Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := p.CommandContext(ctx, "wineboot", "--init").CombinedOutput(); err != nil {
		t.Fatalf("winetest: wineboot --init: %v\n%s", err, out)
	}
	p.installShim(t)
	return p
}

// installShim adds the ProcessPrng forwarder where Wine lacks the DLL.
func (p *Prefix) installShim(t *testing.T) {
	t.Helper()
	dll := filepath.Join(p.Dir, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	if _, err := os.Stat(dll); err == nil {
		return
	}
	tools := testenv.RequireTools(t, "x86_64-w64-mingw32-as", "x86_64-w64-mingw32-ld")
	dir := t.TempDir()
	def, obj := filepath.Join(dir, "shim.def"), filepath.Join(dir, "empty.o")
	if err := os.WriteFile(def, []byte(shimDef), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{tools[0], "-o", obj, "/dev/null"},
		{tools[1], "--dll", "-e", "0", "-o", dll, obj, def},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("winetest: building the bcryptprimitives.dll shim: %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

// Command runs a program (a Windows .exe path on this host, or a Wine
// built-in such as "cmd") in the prefix.
func (p *Prefix) Command(prog string, args ...string) *exec.Cmd {
	return p.CommandContext(context.Background(), prog, args...)
}

// CommandContext is Command with a context that kills the program.
func (p *Prefix) CommandContext(ctx context.Context, prog string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, p.wine, append([]string{prog}, args...)...)
	c.Env = p.env
	return c
}

// HostPath is where a Windows path inside the prefix (C:\...) lives on
// this host.
func (p *Prefix) HostPath(t *testing.T, winPath string) string {
	t.Helper()
	c := exec.Command("winepath", "-u", winPath)
	c.Env = p.env
	out, err := c.Output()
	if err != nil {
		t.Fatalf("winetest: winepath -u %s: %v", winPath, err)
	}
	return string(bytes.TrimSpace(out))
}

// Getenv is the value of a Windows environment variable in the prefix
// (e.g. LOCALAPPDATA).
func (p *Prefix) Getenv(t *testing.T, name string) string {
	t.Helper()
	out, err := p.Command("cmd", "/c", "echo", "%"+name+"%").Output()
	if err != nil {
		t.Fatalf("winetest: %%%s%%: %v", name, err)
	}
	v := string(bytes.TrimSpace(out))
	if v == "%"+name+"%" {
		t.Fatalf("winetest: %%%s%% is not set in the prefix", name)
	}
	return v
}
