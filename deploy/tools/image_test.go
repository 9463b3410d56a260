package tools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// builtImage is the image deploy/image/test built, and the engine that holds it.
func builtImage(t *testing.T) (image, engine string) {
	t.Helper()
	image, engine = os.Getenv("FHIRLAKE_IMAGE"), os.Getenv("FHIRLAKE_ENGINE")
	if image == "" || engine == "" {
		if os.Getenv("FHIRLAKE_REQUIRE_IMAGE") == "1" {
			t.Fatal("FHIRLAKE_IMAGE and FHIRLAKE_ENGINE must name the built image and its engine")
		}
		t.Skip("FHIRLAKE_IMAGE and FHIRLAKE_ENGINE are not set: run deploy/image/test")
	}
	return image, engine
}

// TestChartRunsImage renders the chart with every CI values file and the built image's
// name, and runs each container's command line with --help in that image: the image is
// the one the chart names, and every subcommand and flag the chart passes exists in it
// (cobra refuses an unknown subcommand or flag even with --help).
func TestChartRunsImage(t *testing.T) {
	image, engine := builtImage(t)
	helm := os.Getenv("FHIRLAKE_HELM")
	if helm == "" {
		t.Fatal("FHIRLAKE_HELM must name helm")
	}
	repo, tag, ok := strings.Cut(image, ":")
	if !ok || strings.Contains(tag, "/") {
		t.Fatalf("FHIRLAKE_IMAGE %q: want REPOSITORY:TAG", image)
	}
	ran := map[string]bool{}
	for _, f := range valuesFiles(t) {
		ms, errOut, err := render(t, helm, "-f", f, "--set", "image.repository="+repo, "--set", "image.tag="+tag)
		if err != nil {
			t.Fatalf("helm template -f %s: %v\n%s", filepath.Base(f), err, errOut)
		}
		containers := 0
		for _, m := range ms {
			spec := podSpec(m)
			if spec == nil {
				continue
			}
			for _, list := range []string{"initContainers", "containers"} {
				for _, c := range asList(get(spec, list)) {
					containers++
					where := fmt.Sprintf("%s: %s %s, container %s", filepath.Base(f), m.kind(), m.name(), str(c, "name"))
					if got := str(c, "image"); got != image {
						t.Errorf("%s: image %q, want %q", where, got, image)
					}
					var line []string
					for _, a := range append(asList(get(c, "command")), asList(get(c, "args"))...) {
						line = append(line, fmt.Sprint(a))
					}
					if len(line) == 0 {
						t.Errorf("%s: no command or args", where)
						continue
					}
					key := strings.Join(line, " ")
					if ran[key] {
						continue
					}
					ran[key] = true
					args := []string{"run", "--rm", "--read-only", "--network", "none", "--cap-drop", "ALL"}
					if len(asList(get(c, "command"))) > 0 {
						args = append(args, "--entrypoint", line[0])
						line = line[1:]
					}
					args = append(append(append(args, image), line...), "--help")
					out, err := exec.Command(engine, args...).CombinedOutput()
					if err != nil || !strings.Contains(string(out), "Usage:") {
						t.Errorf("%s: %s %s: %v\n%s", where, engine, strings.Join(args, " "), err, out)
					} else {
						t.Logf("in %s: fhirlake %s --help: ok", image, key)
					}
				}
			}
		}
		if containers == 0 {
			t.Errorf("%s: no containers rendered", filepath.Base(f))
		}
	}
	if len(ran) < 3 {
		t.Errorf("only %d command lines ran (%v): want consume, compact and serve at least", len(ran), ran)
	}
}
