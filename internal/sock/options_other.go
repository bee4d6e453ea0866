//go:build !unix && !windows

package sock

func setOptions(_ uintptr, o Options) error {
	if o.ReusePort {
		return ErrNoReusePort
	}
	return nil
}
