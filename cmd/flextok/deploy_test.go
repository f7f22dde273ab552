package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/engine"
	ftserver "github.com/flextok-sdk/flextok/server"
)

// TestDeployManifests keeps the example Indexed Jobs in deploy/k8s runnable: each is an
// Indexed Job whose completions equal the N of its --shard auto/N, whose container runs a
// flextok command line that this binary's flag parser accepts, and whose volume mounts all
// name declared volumes; a -cuda variant requests a GPU and runs the CUDA provider.
func TestDeployManifests(t *testing.T) {
	files, err := filepath.Glob("../../deploy/k8s/*-job*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Job manifests in deploy/k8s (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var job struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Spec       struct {
					CompletionMode string `yaml:"completionMode"`
					Completions    int    `yaml:"completions"`
					Parallelism    int    `yaml:"parallelism"`
					Template       struct {
						Spec struct {
							RestartPolicy string `yaml:"restartPolicy"`
							Containers    []struct {
								Command      []string  `yaml:"command"`
								Resources    resources `yaml:"resources"`
								VolumeMounts []struct {
									Name string `yaml:"name"`
								} `yaml:"volumeMounts"`
							} `yaml:"containers"`
							Volumes []struct {
								Name string `yaml:"name"`
							} `yaml:"volumes"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := yaml.Unmarshal(data, &job); err != nil {
				t.Fatal(err)
			}
			s := job.Spec
			if job.APIVersion != "batch/v1" || job.Kind != "Job" || s.CompletionMode != "Indexed" {
				t.Fatalf("want a batch/v1 Indexed Job, got %s %s %q", job.APIVersion, job.Kind, s.CompletionMode)
			}
			if s.Template.Spec.RestartPolicy != "Never" || len(s.Template.Spec.Containers) != 1 {
				t.Fatal("want one container and restartPolicy Never (retries per index)")
			}
			c := s.Template.Spec.Containers[0]
			if len(c.Command) < 2 || c.Command[0] != "flextok" {
				t.Fatalf("command %q does not run flextok", c.Command)
			}
			cmd, args, err := newRoot().Find(c.Command[1:])
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.ParseFlags(args); err != nil {
				t.Fatalf("%s: %v", strings.Join(c.Command, " "), err)
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Fatalf("%s: %v", strings.Join(c.Command, " "), err)
			}
			shard, _ := cmd.Flags().GetString("shard")
			n, err := strconv.Atoi(strings.TrimPrefix(shard, "auto/"))
			if !strings.HasPrefix(shard, "auto/") || err != nil || n != s.Completions || s.Parallelism > n {
				t.Fatalf("--shard %q, completions %d, parallelism %d: want --shard auto/N with N = completions >= parallelism", shard, s.Completions, s.Parallelism)
			}
			checkGPU(t, f, cmd, c.Resources)
			declared := map[string]bool{}
			for _, v := range s.Template.Spec.Volumes {
				declared[v.Name] = true
			}
			for _, m := range c.VolumeMounts {
				if !declared[m.Name] {
					t.Fatalf("volume mount %q names no volume", m.Name)
				}
			}
		})
	}
}

type resources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

// checkGPU: a manifest named *-cuda.yaml requests and limits one nvidia.com/gpu and runs
// --provider=cuda; any other requests none and does not ask for CUDA.
func checkGPU(t *testing.T, file string, cmd *cobra.Command, r resources) {
	t.Helper()
	provider, _ := cmd.Flags().GetString("provider")
	cuda := strings.HasSuffix(file, "-cuda.yaml")
	gpu := r.Limits["nvidia.com/gpu"]
	if cuda && (gpu != "1" || r.Requests["nvidia.com/gpu"] != gpu || provider != "cuda") {
		t.Errorf("%s: want nvidia.com/gpu 1 in requests and limits and --provider=cuda; got %q/%q, %q", file, r.Requests["nvidia.com/gpu"], gpu, provider)
	}
	if !cuda && (gpu != "" || provider == "cuda" || provider == "auto") {
		t.Errorf("%s: a CPU manifest with nvidia.com/gpu %q and --provider=%s (a GPU is only visible to pods that request it: use the -cuda variant)", file, gpu, provider)
	}
}

// k8sContainer is what TestDeployServer reads of a container.
type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe                  `yaml:"readinessProbe"`
	LivenessProbe  *probe                  `yaml:"livenessProbe"`
	StartupProbe   *probe                  `yaml:"startupProbe"`
	Resources      resources               `yaml:"resources"`
	VolumeMounts   []struct{ Name string } `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// dockerfile is what TestDeployServer reads of a Dockerfile: its ENV, EXPOSE, CMD (exec form)
// and the repository paths its RUN lines name.
type dockerfile struct {
	env    map[string]string
	expose []string
	cmd    []string
	copies []string // COPY --from destinations
	runs   []string
}

func readDockerfile(t *testing.T, path string) dockerfile {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{env: map[string]string{}}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "ENV":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case "EXPOSE":
			d.expose = append(d.expose, f[1:]...)
		case "CMD":
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "CMD"))), &d.cmd); err != nil {
				t.Fatalf("%s: CMD is not in exec form: %v", path, err)
			}
		case "COPY":
			if strings.HasPrefix(f[1], "--from=") {
				d.copies = append(d.copies, f[len(f)-1])
			}
		case "RUN":
			d.runs = append(d.runs, line)
		}
	}
	return d
}

// TestDeployServer keeps the token service's Dockerfiles and Kubernetes manifests in step with
// the CLI: every command line parses with `flextok serve`'s flags, the listen port is the
// image's EXPOSE and the container's port, the probes ask /healthz and /readyz on it (routes
// the server has), FLEXTOK_ORT_LIB is where the image puts the library, the Service selects
// the pods and targets the port, the scripts the images run exist, and the -cuda variants
// request a GPU (manifest) and use the CUDA build (image).
func TestDeployServer(t *testing.T) {
	routes := map[string]bool{}
	api, err := ftserver.New(ftserver.Config{Models: []ftserver.Model{{Name: "m", Exec: testDefaultEngine(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range api.Routes() {
		routes[strings.TrimPrefix(r, "GET ")] = true
	}
	parseServe := func(t *testing.T, where string, argv []string) *cobra.Command {
		t.Helper()
		cmd, args, err := newRoot().Find(argv)
		if err != nil || cmd.Name() != "serve" {
			t.Fatalf("%s: %q is not flextok serve (%v)", where, argv, err)
		}
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatalf("%s: %s: %v", where, strings.Join(argv, " "), err)
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		return cmd
	}
	port := func(t *testing.T, cmd *cobra.Command) string {
		addr, _ := cmd.Flags().GetString("addr")
		host, p, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" {
			t.Fatalf("--addr %q: want 0.0.0.0:PORT (reachable from outside the container)", addr)
		}
		return p
	}
	for _, variant := range []string{"", "-cuda"} {
		t.Run("variant"+variant, func(t *testing.T) {
			df := readDockerfile(t, "../../deploy/docker/Dockerfile"+strings.ReplaceAll(variant, "-", "."))
			if len(df.cmd) == 0 {
				t.Fatal("no CMD")
			}
			imgCmd := parseServe(t, "Dockerfile CMD", df.cmd)
			imgPort := port(t, imgCmd)
			if !slices.Contains(df.expose, imgPort) {
				t.Errorf("Dockerfile EXPOSE %v lacks --addr's port %s", df.expose, imgPort)
			}
			lib := df.env["FLEXTOK_ORT_LIB"]
			if lib == "" || !slices.ContainsFunc(df.copies, func(c string) bool { return c == lib || strings.HasPrefix(lib, c) }) {
				t.Errorf("FLEXTOK_ORT_LIB=%q is not where a COPY puts the library (%v)", lib, df.copies)
			}
			script := "scripts/setup-ort.sh"
			if variant == "-cuda" {
				script = "scripts/setup-ort-gpu.sh"
			}
			if !slices.ContainsFunc(df.runs, func(r string) bool { return strings.Contains(r, script) }) {
				t.Errorf("the image does not run %s", script)
			}
			for _, r := range df.runs {
				for _, w := range strings.Fields(r) {
					if strings.HasPrefix(w, "scripts/") {
						if _, err := os.Stat("../../" + w); err != nil {
							t.Errorf("RUN names %s: %v", w, err)
						}
					}
				}
			}
			if p, _ := imgCmd.Flags().GetString("provider"); (variant == "-cuda") != (p == "cuda") {
				t.Errorf("Dockerfile%s runs --provider=%s", variant, p)
			}

			data, err := os.ReadFile("../../deploy/k8s/server" + variant + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			var dep struct {
				Kind string `yaml:"kind"`
				Spec struct {
					Selector struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"selector"`
					Template struct {
						Metadata struct {
							Labels map[string]string `yaml:"labels"`
						} `yaml:"metadata"`
						Spec struct {
							Containers []k8sContainer          `yaml:"containers"`
							Volumes    []struct{ Name string } `yaml:"volumes"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			var svc struct {
				Kind string `yaml:"kind"`
				Spec struct {
					Selector map[string]string `yaml:"selector"`
					Ports    []struct {
						TargetPort string `yaml:"targetPort"`
					} `yaml:"ports"`
				} `yaml:"spec"`
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			if err := dec.Decode(&dep); err != nil || dep.Kind != "Deployment" {
				t.Fatalf("first document: want a Deployment (%v, %q)", err, dep.Kind)
			}
			if err := dec.Decode(&svc); err != nil || svc.Kind != "Service" {
				t.Fatalf("second document: want a Service (%v, %q)", err, svc.Kind)
			}
			for k, v := range dep.Spec.Selector.MatchLabels {
				if dep.Spec.Template.Metadata.Labels[k] != v || svc.Spec.Selector[k] != v {
					t.Errorf("label %s=%s: the pod template or the Service selector lacks it", k, v)
				}
			}
			if len(dep.Spec.Template.Spec.Containers) != 1 {
				t.Fatal("want one container")
			}
			c := dep.Spec.Template.Spec.Containers[0]
			if len(c.Command) < 2 || c.Command[0] != "flextok" {
				t.Fatalf("command %q does not run flextok", c.Command)
			}
			cmd := parseServe(t, "Deployment", c.Command[1:])
			p := port(t, cmd)
			if len(c.Ports) != 1 || strconv.Itoa(c.Ports[0].ContainerPort) != p || p != imgPort {
				t.Fatalf("containerPort %v, --addr port %s, image port %s: want one port, the same", c.Ports, p, imgPort)
			}
			portName := c.Ports[0].Name
			for _, pr := range []struct {
				name string
				p    *probe
				path string
			}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
				if pr.p == nil || pr.p.HTTPGet.Path != pr.path || pr.p.HTTPGet.Port != portName || !routes[pr.path] {
					t.Errorf("%s: want httpGet %s on port %q, a route of the server", pr.name, pr.path, portName)
				}
			}
			if c.StartupProbe != nil && !routes[c.StartupProbe.HTTPGet.Path] {
				t.Errorf("startupProbe path %q is no route", c.StartupProbe.HTTPGet.Path)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != portName {
				t.Errorf("Service targetPort %v, want %q", svc.Spec.Ports, portName)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if b, _ := cmd.Flags().GetString("backend"); b == "ort" && env["FLEXTOK_ORT_LIB"] != lib {
				t.Errorf("FLEXTOK_ORT_LIB %q, the image's is %q", env["FLEXTOK_ORT_LIB"], lib)
			}
			if !strings.HasSuffix(c.Image, ":latest"+variant) {
				t.Errorf("image %q: want the tag latest%s", c.Image, variant)
			}
			checkGPU(t, "server"+variant+".yaml", cmd, c.Resources)
			declared := map[string]bool{}
			for _, v := range dep.Spec.Template.Spec.Volumes {
				declared[v.Name] = true
			}
			for _, m := range c.VolumeMounts {
				if !declared[m.Name] {
					t.Errorf("volume mount %q names no volume", m.Name)
				}
			}
			// The grace period covers the drain delay and the shutdown timeout.
			drain, _ := cmd.Flags().GetDuration("drain-delay")
			stop, _ := cmd.Flags().GetDuration("shutdown-timeout")
			if g := graceSeconds(t, data); float64(g) < (drain + stop).Seconds() {
				t.Errorf("terminationGracePeriodSeconds %d < --drain-delay + --shutdown-timeout (%v)", g, drain+stop)
			}
		})
	}
}

func graceSeconds(t *testing.T, data []byte) int {
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Grace int `yaml:"terminationGracePeriodSeconds"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Spec.Grace == 0 {
		return 30 // Kubernetes' default
	}
	return d.Spec.Template.Spec.Grace
}

func testDefaultEngine(t *testing.T) *engine.Engine {
	e, err := models.LoadDefault(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
