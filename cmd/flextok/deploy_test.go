package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDeployManifests keeps the example Kubernetes manifests in deploy/k8s runnable: each is
// an Indexed Job whose completions equal the N of its --shard auto/N, whose container runs a
// flextok command line that this binary's flag parser accepts, and whose volume mounts all
// name declared volumes.
func TestDeployManifests(t *testing.T) {
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
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
								Command      []string `yaml:"command"`
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
