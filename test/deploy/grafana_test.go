package deploy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/p2pd-go/p2pd/internal/testbin"
)

// datasourceUID is the Prometheus data source grafana/provisioning defines.
const datasourceUID = "p2pd-prometheus"

// generatedByPrometheus are series Prometheus itself adds to every target.
var generatedByPrometheus = []string{"up"}

// query is one panel target's PromQL and where it is.
type query struct{ where, expr string }

// loadDashboards decodes every dashboard strictly (unknown fields, wrong
// types and unknown panel or query kinds fail) and returns their queries.
func loadDashboards(t *testing.T, dir string) []query {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", dir, err)
	}
	var queries []query
	uids := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 file-provisioned dashboards are the classic (v1) JSON model Grafana 11 loads
		var d dashboard.Dashboard
		if err := strict(d.UnmarshalJSONStrict(raw)); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		name := filepath.Base(f)
		if d.Uid == nil || *d.Uid == "" || d.Title == nil {
			t.Errorf("%s: no uid or title", name)
			continue
		}
		if other, dup := uids[*d.Uid]; dup {
			t.Errorf("%s and %s share uid %s", name, other, *d.Uid)
		}
		uids[*d.Uid] = name
		// The SDK (v0.0.22) validates every panel above but keeps none: its
		// panel-or-row decoder drops a panel whose decoder returned an empty
		// error list. So decode each panel again, as a Panel, strictly.
		var rawPanels struct {
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &rawPanels); err != nil || len(rawPanels.Panels) == 0 {
			t.Errorf("%s: no panels (%v)", name, err)
			continue
		}
		ids := map[uint32]bool{}
		for _, rp := range rawPanels.Panels {
			p := &dashboard.Panel{}
			if err := strict(p.UnmarshalJSONStrict(rp)); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if p.Type == "row" {
				t.Errorf("%s: a row panel (only plain panels are used)", name)
				continue
			}
			where := name + ": " + deref(p.Title)
			if p.Id == nil || ids[*p.Id] {
				t.Errorf("%s: missing or repeated panel id", where)
			} else {
				ids[*p.Id] = true
			}
			if p.Datasource == nil || deref(p.Datasource.Uid) != datasourceUID {
				t.Errorf("%s: data source is not uid %s", where, datasourceUID)
			}
			// The same SDK bug drops every target; decode them as
			// Prometheus queries, strictly.
			var rawTargets struct {
				Targets []json.RawMessage `json:"targets"`
			}
			if err := json.Unmarshal(rp, &rawTargets); err != nil || len(rawTargets.Targets) == 0 {
				t.Errorf("%s: no queries (%v)", where, err)
			}
			for _, rt := range rawTargets.Targets {
				q := &prometheus.Dataquery{}
				if err := strict(q.UnmarshalJSONStrict(rt)); err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if q.Datasource == nil || deref(q.Datasource.Uid) != datasourceUID {
					t.Errorf("%s: query %s has no data source uid %s", where, deref(q.RefId), datasourceUID)
				}
				queries = append(queries, query{where: where + " " + deref(q.RefId), expr: q.Expr})
			}
		}
	}
	return queries
}

// strict turns the SDK's empty error list (a non-nil error holding no
// errors) into nil.
func strict(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// metricNames parses expr and returns the metric names it selects.
func metricNames(expr string) ([]string, error) {
	names, _, err := selectors(expr)
	return names, err
}

// selectors parses expr and returns the metric names it selects and the
// values its job="..." matchers ask for.
func selectors(expr string) (names, jobs []string, err error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, nil, err
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
			for _, m := range vs.LabelMatchers {
				if m.Name == "job" {
					jobs = append(jobs, m.Value)
				}
			}
		}
		return nil
	})
	return names, jobs, nil
}

// prometheusJobs are the job names deploy/prometheus.yml scrapes.
func prometheusJobs(t *testing.T) []string {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
	}
	return jobs
}

// TestProvisioning: the data source has the uid every panel uses, and the
// dashboards' job selectors are jobs deploy/prometheus.yml scrapes.
func TestProvisioning(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Datasources []struct{ UID, Type, URL string } `json:"datasources"`
	}
	if err := yaml.Unmarshal(raw, &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].UID != datasourceUID || ds.Datasources[0].Type != "prometheus" ||
		ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("data source provisioning: %+v", ds)
	}
	jobs := prometheusJobs(t)
	for _, q := range loadDashboards(t, filepath.Join(root, "grafana", "dashboards")) {
		_, want, err := selectors(q.expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range want {
			if !slices.Contains(jobs, j) {
				t.Errorf("%s: job %q is not scraped by deploy/prometheus.yml (jobs %v)", q.where, j, jobs)
			}
		}
	}
}

// TestDashboardLoaderRefuses: the strict loading and parsing above do fail
// on the mistakes they are there for.
func TestDashboardLoaderRefuses(t *testing.T) {
	if _, err := metricNames(`sum(rate(stund_requests_total[5m])`); err == nil {
		t.Error("unbalanced PromQL parsed")
	}
	bad := `{"uid":"x","title":"x","panels":[{"id":1,"type":"timeseries","title":"p","gridPos":{"h":8,"w":12,"x":0,"y":0},` +
		`"datasource":{"type":"prometheus","uid":"p2pd-prometheus"},"targets":[{"refId":"A","expr":"up"}],"colour":"red"}]}`
	//lint:ignore SA1019 file-provisioned dashboards are the classic (v1) JSON model Grafana 11 loads
	var d dashboard.Dashboard
	plugins.RegisterDefaultPlugins()
	if err := strict(d.UnmarshalJSONStrict([]byte(bad))); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("a panel with an unknown field loaded: %v", err)
	}
}

func TestDashboards(t *testing.T) {
	root := repoRoot(t)
	queries := loadDashboards(t, filepath.Join(root, "grafana", "dashboards"))

	used := map[string][]string{} // metric -> where
	for _, q := range queries {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", q.where, q.expr)
		}
		for _, n := range names {
			if n == "" {
				t.Errorf("%s: %q selects by labels only; name the metric", q.where, q.expr)
			}
			used[n] = append(used[n], q.where)
		}
	}
	if t.Failed() {
		return
	}
	if testing.Short() {
		t.Skip("the metric names need running programs; skipped in -short mode")
	}
	exported := scrapeEverything(t)
	var missing []string
	for n, where := range used {
		if !exported[n] && !slices.Contains(generatedByPrometheus, n) {
			missing = append(missing, n+" (in "+strings.Join(where, "; ")+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("no running program exports %s", m)
	}
}

// scrapeEverything runs stund, turnd, mqttd and an agent (with a standing
// allocation on that turnd) on loopback, has the agent open a pipe to
// itself and echo, and returns every series name
// their /metrics pages hold (with _bucket, _sum and _count for histograms).
func scrapeEverything(t *testing.T) map[string]bool {
	stund, turnd, mqttd, agent := testbin.Build(t, "cmd/stund"), testbin.Build(t, "cmd/turnd"),
		testbin.Build(t, "cmd/mqttd"), testbin.Build(t, "cmd/agent")
	stunPort, stunAlt := freePort(t, "127.0.0.1", "127.0.0.2"), freePort(t, "127.0.0.1", "127.0.0.2")
	admins := map[string]string{}
	for _, p := range []string{"stund", "turnd", "mqttd", "agent"} {
		admins[p] = hostPort(freePort(t))
	}
	start(t, stund, admins["stund"], "--primary-ip4", "127.0.0.1", "--alternate-ip4", "127.0.0.2",
		"--port", itoa(stunPort), "--alt-port", itoa(stunAlt), "--admin", admins["stund"])
	relay, turnPort := freePort(t), freePort(t)
	turnUsers := filepath.Join(t.TempDir(), "turn-users")
	if err := os.WriteFile(turnUsers, []byte("agent:deploy-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	turnPass := filepath.Join(t.TempDir(), "turn-password")
	if err := os.WriteFile(turnPass, []byte("deploy-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, turnd, admins["turnd"], "--listen", "127.0.0.1", "--port", itoa(turnPort), "--users-file", turnUsers,
		"--relay-bind", "127.0.0.1", "--relay-ip", "127.0.0.1", "--relay-min-port", itoa(relay), "--relay-max-port", itoa(relay),
		"--admin", admins["turnd"])
	mqtt := hostPort(freePort(t))
	start(t, mqttd, admins["mqttd"], "--listen", mqtt, "--ws-listen", "", "--allow-anonymous", "--admin", admins["mqttd"])
	api := hostPort(freePort(t))
	start(t, agent, admins["agent"], "--state-dir", t.TempDir(), "--api", api, "--admin", admins["agent"],
		"--port", itoa(freePort(t)), "--no-portmap", "--brokers", "tcp://"+mqtt,
		"--turn", "turn:127.0.0.1:"+itoa(turnPort)+"?transport=udp", "--turn-username", "agent", "--turn-password-file", turnPass,
		"--stun", "127.0.0.1:"+itoa(stunPort)+",127.0.0.2:"+itoa(stunPort))
	apiGet(t, api, "/p2p/open/me/self")
	apiGet(t, api, "/p2p/send/me/ECHO%20hello")
	apiGet(t, api, "/p2p/recv/me/timeout/10")

	names := map[string]bool{}
	for prog, admin := range admins {
		_, fams := scrape(t, "http://"+admin+"/metrics")
		if len(fams) == 0 {
			t.Fatalf("%s exports no metrics", prog)
		}
		for n, f := range fams {
			names[n] = true
			switch f.GetType().String() {
			case "HISTOGRAM":
				names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
			case "SUMMARY":
				names[n+"_sum"], names[n+"_count"] = true, true
			}
		}
	}
	return names
}

func itoa(n int) string { return strconv.Itoa(n) }
