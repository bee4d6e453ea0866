package deploy

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/p2pd-go/p2pd/internal/testbin"
	"github.com/p2pd-go/p2pd/internal/testenv"
)

// rendered is one `helm template` run, decoded.
type rendered struct {
	objs []runtime.Object
}

// decoder decodes YAML strictly into the Kubernetes API types (client-go's
// scheme plus the Prometheus Operator's ServiceMonitor): unknown and
// duplicate fields are errors.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	sch := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(sch); err != nil {
			t.Fatal(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, sch, sch, kjson.SerializerOptions{Yaml: true, Strict: true})
}

func decodeAll(t *testing.T, dec runtime.Decoder, manifest string) (rendered, error) {
	t.Helper()
	var r rendered
	rd := kyaml.NewYAMLReader(bufioReader(manifest))
	for {
		doc, err := rd.Read()
		if err != nil {
			break // io.EOF
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return r, err
		}
		r.objs = append(r.objs, obj)
	}
	return r, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return command(ctx, repoRoot(t), nil, nil, "helm", args...)
}

func TestHelmChart(t *testing.T) {
	testenv.RequireTools(t, "helm")
	chart := filepath.Join("deploy", "helm", "p2pd")
	valueFiles, _ := filepath.Glob(filepath.Join(repoRoot(t), chart, "ci", "*-values.yaml"))
	if len(valueFiles) < 3 {
		t.Fatalf("want the ci/*-values.yaml files, got %v", valueFiles)
	}
	dec := decoder(t)
	cases := map[string]func(t *testing.T, r rendered){
		"defaults":     checkDefaults,
		"hostnetwork":  checkHostNetwork,
		"loadbalancer": checkLoadBalancer,
		"brokers3":     checkBrokers3,
	}
	for name, check := range cases {
		t.Run(name, func(t *testing.T) {
			args := []string{"--strict", chart}
			if name != "defaults" {
				args = append(args, "-f", filepath.Join(chart, "ci", name+"-values.yaml"))
			}
			if out, err := helm(t, append([]string{"lint"}, args...)...); err != nil {
				t.Fatalf("helm lint: %v", err)
			} else if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint: %s", out)
			}
			targs := []string{"template", "rel", chart, "--namespace", "p2pd"}
			if name != "defaults" {
				targs = append(targs, "-f", filepath.Join(chart, "ci", name+"-values.yaml"))
			}
			out, err := helm(t, targs...)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decodeAll(t, dec, out)
			if err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			checkEveryPod(t, r)
			check(t, r)
		})
	}

	t.Run("refuses bad values", func(t *testing.T) {
		for _, tc := range []struct{ set, want string }{
			{"stund.mode=hostNetwork", "ip4"},
			{"stund.colour=red", "colour"},
			{"mqttd.replicas=0", "replicas"},
			{"turnd.mode=loadBalancer", "relayIp"},
		} {
			out, err := helm(t, "template", "rel", chart, "--set", tc.set)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("--set %s: %v\n%s", tc.set, err, out)
			}
		}
	})

	t.Run("strict decoding refuses unknown and duplicate fields", func(t *testing.T) {
		for _, doc := range []string{
			"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {colour: red}\n",
			"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: LoadBalancer}\n",
		} {
			if _, err := decodeAll(t, dec, doc); err == nil {
				t.Errorf("decoded %q", doc)
			}
		}
	})

	t.Run("generated MQTT credentials log in to mqttd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("runs mqttd; skipped in -short mode")
		}
		out, err := helm(t, "template", "rel", chart, "--show-only", "templates/secrets.yaml")
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeAll(t, dec, out)
		if err != nil {
			t.Fatal(err)
		}
		s := find[*corev1.Secret](r, "rel-p2pd-mqttd")
		if s == nil {
			t.Fatal("no rel-p2pd-mqttd Secret")
		}
		users := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(users, s.Data["users"], 0o600); err != nil {
			t.Fatal(err)
		}
		password := string(s.Data["password-agent"])
		if len(password) < 20 {
			t.Fatalf("generated password %d characters", len(password))
		}
		bin := testbin.Build(t, "cmd/mqttd")
		addr, admin := hostPort(freePort(t)), hostPort(freePort(t))
		start(t, bin, admin, "--listen", addr, "--ws-listen", "", "--users", users, "--admin", admin)
		for _, tc := range []struct {
			password string
			ok       bool
		}{{password, true}, {password + "x", false}} {
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetUsername("agent").
				SetPassword(tc.password).SetClientID("helm-test").SetConnectRetry(false).SetAutoReconnect(false))
			tok := c.Connect()
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatal("mqtt connect did not finish")
			}
			if (tok.Error() == nil) != tc.ok {
				t.Errorf("login with the %s password: %v", map[bool]string{true: "generated", false: "wrong"}[tc.ok], tok.Error())
			}
			c.Disconnect(0)
		}
	})
}

func find[T runtime.Object](r rendered, name string) T {
	var zero T
	for _, o := range r.objs {
		if v, ok := o.(T); ok {
			if m, ok := any(v).(interface{ GetName() string }); ok && m.GetName() == name {
				return v
			}
		}
	}
	return zero
}

func all[T runtime.Object](r rendered) []T {
	var out []T
	for _, o := range r.objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// podSpecs returns every workload's pod template by workload name.
func podSpecs(r rendered) map[string]*corev1.PodSpec {
	out := map[string]*corev1.PodSpec{}
	for _, d := range all[*appsv1.Deployment](r) {
		out[d.Name] = &d.Spec.Template.Spec
	}
	for _, s := range all[*appsv1.StatefulSet](r) {
		out[s.Name] = &s.Spec.Template.Spec
	}
	return out
}

// checkEveryPod: non-root, read-only root, no capabilities, probes,
// resources, standard labels, and a PodDisruptionBudget per workload.
func checkEveryPod(t *testing.T, r rendered) {
	pods := podSpecs(r)
	if len(pods) == 0 {
		t.Fatal("no workloads rendered")
	}
	pdbs := map[string]bool{}
	for _, p := range all[*policyv1.PodDisruptionBudget](r) {
		pdbs[p.Name] = true
	}
	for name, p := range pods {
		if !pdbs[name] {
			t.Errorf("%s: no PodDisruptionBudget", name)
		}
		psc := p.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod may run as root", name)
		}
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it does not need", name)
		}
		for _, c := range p.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s/%s: securityContext %+v", name, c.Name, sc)
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s/%s: no probes", name, c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: no CPU request or memory limit", name, c.Name)
			}
		}
	}
	for _, o := range r.objs {
		m, ok := o.(interface{ GetLabels() map[string]string })
		if !ok {
			continue
		}
		l := m.GetLabels()
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if l[k] == "" {
				t.Errorf("%T %v lacks label %s", o, l, k)
			}
		}
	}
}

func arg(p *corev1.PodSpec, prefix string) string {
	for _, a := range p.Containers[0].Args {
		if strings.HasPrefix(a, prefix) {
			return strings.TrimPrefix(a, prefix)
		}
	}
	return ""
}

func checkDefaults(t *testing.T, r rendered) {
	pods := podSpecs(r)
	for _, n := range []string{"rel-p2pd-stund", "rel-p2pd-turnd", "rel-p2pd-mqttd"} {
		if pods[n] == nil {
			t.Errorf("no %s workload", n)
		}
	}
	if t.Failed() {
		return
	}
	svc := find[*corev1.Service](r, "rel-p2pd-stund")
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("stund Service: %+v", svc)
	}
	turnd := pods["rel-p2pd-turnd"]
	if !turnd.HostNetwork {
		t.Error("turnd is not on the host network by default")
	}
	if g := turnd.TerminationGracePeriodSeconds; g == nil || *g < 45 {
		t.Errorf("turnd termination grace %v, want >= drain (30 s) + 15 s", g)
	}
	if arg(turnd, "--admin=") != "127.0.0.1:9102" {
		t.Errorf("turnd on the host network has admin %q, want loopback", arg(turnd, "--admin="))
	}
	for _, n := range []string{"rel-p2pd-turnd", "rel-p2pd-mqttd"} {
		if s := find[*corev1.Secret](r, n); s == nil || len(s.Data) == 0 {
			t.Errorf("no generated Secret %s", n)
		}
	}
	if len(all[*monitoringv1.ServiceMonitor](r)) != 0 {
		t.Error("a ServiceMonitor by default")
	}
}

func checkHostNetwork(t *testing.T, r rendered) {
	stund := podSpecs(r)["rel-p2pd-stund"]
	if stund == nil || !stund.HostNetwork {
		t.Fatal("stund is not on the host network")
	}
	if arg(stund, "--primary-ip4=") != "192.0.2.10" || arg(stund, "--alternate-ip4=") != "192.0.2.11" {
		t.Errorf("stund args %v", stund.Containers[0].Args)
	}
	if find[*corev1.Service](r, "rel-p2pd-stund") != nil {
		t.Error("a stund Service in hostNetwork mode")
	}
	turnd := podSpecs(r)["rel-p2pd-turnd"]
	if arg(turnd, "--allow-peer=") != "10.0.0.0/8" || arg(turnd, "--relay-ip=") != "192.0.2.10" {
		t.Errorf("turnd args %v", turnd.Containers[0].Args)
	}
}

func checkLoadBalancer(t *testing.T, r rendered) {
	for _, n := range []string{"rel-p2pd-stund", "rel-p2pd-turnd", "rel-p2pd-mqttd-0"} {
		svc := find[*corev1.Service](r, n)
		if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			t.Errorf("%s: want a LoadBalancer with externalTrafficPolicy Local: %+v", n, svc)
		}
	}
	turnd := podSpecs(r)["rel-p2pd-turnd"]
	if turnd.HostNetwork {
		t.Error("turnd on the host network in loadBalancer mode")
	}
	if find[*corev1.Secret](r, "rel-p2pd-turnd") != nil {
		t.Error("a generated TURN secret although existingSecret is set")
	}
	if v := turnd.Volumes; len(v) == 0 || v[0].Secret == nil || v[0].Secret.SecretName != "my-turn-secret" {
		t.Errorf("turnd does not mount my-turn-secret: %+v", v)
	}
	sms := all[*monitoringv1.ServiceMonitor](r)
	if len(sms) != 1 || sms[0].Labels["release"] != "prometheus" || sms[0].Spec.JobLabel != "p2pd.io/job" {
		t.Fatalf("ServiceMonitor: %+v", sms)
	}
	// Every Service it selects names its job as deploy/prometheus.yml does,
	// so the dashboards' job selectors hold under the Prometheus Operator.
	jobs, selected := prometheusJobs(t), 0
	for _, svc := range all[*corev1.Service](r) {
		if svc.Labels["p2pd.io/metrics"] != "true" {
			continue
		}
		selected++
		if j := svc.Labels["p2pd.io/job"]; !slices.Contains(jobs, j) {
			t.Errorf("metrics Service %s has job %q, want one of %v", svc.Name, j, jobs)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "admin" }) {
			t.Errorf("metrics Service %s has no admin port", svc.Name)
		}
	}
	if selected != 3 {
		t.Errorf("%d metrics Services, want 3 (stund, turnd, mqttd)", selected)
	}
}

func checkBrokers3(t *testing.T, r rendered) {
	ss := find[*appsv1.StatefulSet](r, "rel-p2pd-mqttd")
	if ss == nil || ss.Spec.Replicas == nil || *ss.Spec.Replicas != 3 || len(ss.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("mqttd StatefulSet: %+v", ss)
	}
	if c := ss.Spec.Template.Spec.Containers[0]; c.Image != "registry.example.com/p2pd/mqttd:v1.2.3" {
		t.Errorf("image %s", c.Image)
	}
	for i, n := range []string{"rel-p2pd-mqttd-0", "rel-p2pd-mqttd-1", "rel-p2pd-mqttd-2"} {
		svc := find[*corev1.Service](r, n)
		if svc == nil || svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] != n {
			t.Errorf("broker %d Service: %+v", i, svc)
		}
	}
	s := find[*corev1.Secret](r, "rel-p2pd-mqttd")
	if s == nil || string(s.Data["password-monitor"]) != "a-fixed-password" || !bytes.Contains(s.Data["users"], []byte("monitor:$2")) {
		t.Errorf("mqttd users Secret: %v", s)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
