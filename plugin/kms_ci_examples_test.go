package plugin

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/docker/cli/cli/command"
	"go.yaml.in/yaml/v3"
)

// The CI examples in examples/ci build, push and sign with a KMS key. This
// test parses them as the CI systems would (YAML), finds every
// `docker notarize` command line, checks each against this plugin's command
// tree and flags, and checks that the job adopts a KMS key and signs with it.
func TestCIExamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		// commands returns the job's shell lines and its environment.
		commands func(t *testing.T, doc map[string]any) (lines []string, env map[string]string)
	}{
		{"github-actions.yml", githubActionsCommands},
		{"gitlab-ci.yml", gitlabCICommands},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b := mustRead(t, filepath.Join("..", "examples", "ci", tc.file))
			var doc map[string]any
			if err := yaml.Unmarshal(b, &doc); err != nil {
				t.Fatalf("%s is not YAML: %v", tc.file, err)
			}
			lines, env := tc.commands(t, doc)
			var generated, signedWith string
			var kmsURI string
			for _, line := range lines {
				args, ok := notarizeArgs(line)
				if !ok {
					continue
				}
				checkCommandLine(t, args)
				switch {
				case len(args) > 2 && args[0] == "key" && args[1] == "generate":
					generated = flagValue(args, "--name")
					kmsURI = expandEnv(flagValue(args, "--kms"), env)
				case len(args) > 1 && args[0] == "sign":
					signedWith = flagValue(args, "--key")
				}
			}
			if generated == "" || kmsURI == "" {
				t.Fatalf("%s: no `docker notarize key generate --name NAME --kms URI`", tc.file)
			}
			provider, err := providerOf(kmsURI)
			if err != nil || provider == ProviderPKCS11 {
				t.Fatalf("%s: --kms %q is not a KMS key URI: %v", tc.file, kmsURI, err)
			}
			if signedWith != generated {
				t.Fatalf("%s: signs with --key %q, not the KMS key %q", tc.file, signedWith, generated)
			}
			if strings.Contains(string(b), "NOTARIZE_PASSWORD") {
				t.Fatalf("%s: a KMS job needs no key password", tc.file)
			}
		})
	}
}

func githubActionsCommands(t *testing.T, doc map[string]any) ([]string, map[string]string) {
	env := stringMap(doc["env"])
	jobs, _ := doc["jobs"].(map[string]any)
	if len(jobs) == 0 {
		t.Fatal("no jobs")
	}
	var lines []string
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		steps, _ := job["steps"].([]any)
		for _, s := range steps {
			step, _ := s.(map[string]any)
			if run, ok := step["run"].(string); ok {
				lines = append(lines, strings.Split(run, "\n")...)
			}
		}
	}
	return lines, env
}

func gitlabCICommands(t *testing.T, doc map[string]any) ([]string, map[string]string) {
	var lines []string
	env := map[string]string{}
	for name, j := range doc {
		job, ok := j.(map[string]any)
		if !ok || name == "variables" || name == "default" {
			continue
		}
		for k, v := range stringMap(job["variables"]) {
			env[k] = v
		}
		for _, key := range []string{"before_script", "script"} {
			items, _ := job[key].([]any)
			for _, it := range items {
				if s, ok := it.(string); ok {
					lines = append(lines, s)
				}
			}
		}
	}
	if len(lines) == 0 {
		t.Fatal("no job scripts")
	}
	return lines, env
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

var envRef = regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)

func expandEnv(v string, env map[string]string) string {
	if m := envRef.FindStringSubmatch(v); m != nil {
		return env[m[1]]
	}
	return v
}

// notarizeArgs returns the words after "docker notarize" on a shell line.
func notarizeArgs(line string) ([]string, bool) {
	words := shellWords(line)
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "docker" && words[i+1] == "notarize" {
			return words[i+2:], true
		}
	}
	return nil, false
}

// shellWords splits a simple shell line into words, honouring single and
// double quotes (enough for the examples: no escapes inside quotes).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// checkCommandLine checks args names a command of the plugin and that its
// flags parse, without running it.
func checkCommandLine(t *testing.T, args []string) {
	t.Helper()
	dockerCli, err := command.NewDockerCli(command.WithOutputStream(io.Discard), command.WithErrorStream(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd("docker-notarize", false, dockerCli, env{lookupEnv: os.LookupEnv})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Fatalf("`docker notarize %s`: no such command (%v)", strings.Join(args, " "), err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("`docker notarize %s`: %v", strings.Join(args, " "), err)
	}
}
