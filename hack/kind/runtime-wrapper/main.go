// runc wrapper for machines whose root lacks CAP_SYS_RESOURCE in its capability bounding set.
//
// Docker asks runc for every capability when a container is --privileged (kind nodes always
// are); runc then fails with "unable to apply caps: operation not permitted" because a process
// cannot gain a capability outside its bounding set. This wrapper removes CAP_SYS_RESOURCE from
// the OCI spec runc is about to use (the bundle's config.json for create/run, the --process file
// for exec) and then execs the real runc with the same arguments. hack/kind/docker.sh builds it
// and registers it as dockerd's default runtime only where the capability is missing.
//
// The real runc: $REALM_OPERATOR_REAL_RUNC, else the first "runc" on PATH that is not this
// program, else /usr/sbin/runc or /usr/bin/runc.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const dropped = "CAP_SYS_RESOURCE"

// runc's global options that take a value (runc --help).
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

func main() {
	args := os.Args[1:]
	sub, subAt := subcommand(args)
	var err error
	switch sub {
	case "create", "run":
		bundle := optionValue(args[subAt+1:], "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		err = stripFile(filepath.Join(bundle, "config.json"), true)
	case "exec":
		if p := optionValue(args[subAt+1:], "--process", "-p"); p != "" {
			err = stripFile(p, false)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc wrapper: %v\n", err)
		os.Exit(1)
	}
	real, err := realRunc()
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc wrapper: %v\n", err)
		os.Exit(1)
	}
	err = syscall.Exec(real, append([]string{"runc"}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc wrapper: exec %s: %v\n", real, err)
	os.Exit(1)
}

func subcommand(args []string) (string, int) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, i
		}
		if globalWithValue[a] {
			i++
		}
	}
	return "", len(args)
}

func optionValue(args []string, long, short string) string {
	for i, a := range args {
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1]
		}
		for _, name := range []string{long, short} {
			if strings.HasPrefix(a, name+"=") {
				return strings.TrimPrefix(a, name+"=")
			}
		}
	}
	return ""
}

// stripFile removes the capability from every set of the spec's process (config.json) or of a
// bare process (exec's process.json). Numbers are kept as written (rlimits exceed float64).
func stripFile(path string, isSpec bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	process := doc
	if isSpec {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		process = p
	}
	caps, ok := process["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if c == dropped {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".capstrip"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func realRunc() (string, error) {
	if p := os.Getenv("REALM_OPERATOR_REAL_RUNC"); p != "" {
		return p, nil
	}
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "runc")
		if resolved, err := filepath.EvalSymlinks(p); err == nil && resolved != self {
			if st, err := os.Stat(resolved); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc"} {
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no real runc found (set REALM_OPERATOR_REAL_RUNC)")
}
