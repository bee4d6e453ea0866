package api

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/p2pd-go/p2pd/pkg/node"
)

// Bounds of the per-connect timeout parameter.
const (
	minStrategyTimeout = 10 * time.Millisecond
	maxStrategyTimeout = 5 * time.Minute
)

// connectOptions reads /p2p/open's optional query parameters:
//
//	strategies=relay,direct  which strategies race, in priority order (default: all)
//	timeout=3s               deadline of each strategy (Go duration)
//	stagger=0                start every strategy at once
//
// Unknown parameters are refused, so a typo is not silently ignored.
func connectOptions(q url.Values) (node.Options, error) {
	var o node.Options
	for k, vs := range q {
		if len(vs) != 1 {
			return o, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "strategies":
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name == "" {
					return o, fmt.Errorf("strategies=%q: empty name", v)
				}
				o.Strategies = append(o.Strategies, name)
			}
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < minStrategyTimeout || d > maxStrategyTimeout {
				return o, fmt.Errorf("timeout=%q: want a duration from %v to %v, e.g. 3s", v, minStrategyTimeout, maxStrategyTimeout)
			}
			o.Timeout = d
		case "stagger":
			switch v {
			case "0", "false", "off":
				o.NoStagger = true
			case "1", "true", "on":
			default:
				return o, fmt.Errorf("stagger=%q: want 0 or 1", v)
			}
		case "token": // the API token (see auth)
		default:
			return o, fmt.Errorf("unknown query parameter %q (open takes strategies, timeout, stagger)", k)
		}
	}
	return o, nil
}
