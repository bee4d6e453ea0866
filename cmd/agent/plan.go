package main

// agent plan ADDR asks the running agent what a connect to ADDR would try,
// in which order and why, before anything is sent (GET /p2p/plan/ADDR).
func init() {
	commands["plan"] = command{usage: "plan ADDR                 what a connect to ADDR would try, in which order, and why", args: 1,
		path: func(a []string) string { return "/p2p/plan/" + esc(a[0]) }}
}
