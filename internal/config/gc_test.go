package config

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tests := []struct {
		name string
		env  string // "" unsets GOGC
		want int
	}{
		{"no GOGC: the program's target", "", 400},
		{"GOGC set: left to the runtime", "150", 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.env) // restores the variable afterwards
			if tt.env == "" {
				if err := os.Unsetenv("GOGC"); err != nil {
					t.Fatal(err)
				}
				debug.SetGCPercent(100)
			} else {
				debug.SetGCPercent(150) // what the runtime read from GOGC at start
			}
			TuneGC(400)
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Fatalf("GC percent %d, want %d", got, tt.want)
			}
		})
	}
}
