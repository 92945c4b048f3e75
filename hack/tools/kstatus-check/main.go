// kstatus-check prints the status kstatus (sigs.k8s.io/cli-utils, the library Flux's
// kustomize-controller and `flux`/`kpt` use to decide whether an applied object is healthy)
// computes for each Kubernetes object it reads.
//
// Input: JSON or YAML objects (multi-document YAML, a JSON object, or a `kind: List`) from the
// files named on the command line, or stdin when there are none.
// Output: one JSON object per input object, one per line:
//
//	{"kind":"PublishedRealm","name":"demo","status":"Current","message":"Resource is Ready"}
//
// status is one of kstatus's values: InProgress, Failed, Current, Terminating, Unknown.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	inputs := os.Args[1:]
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, name := range inputs {
		if err := checkInput(name, out); err != nil {
			out.Flush()
			fmt.Fprintf(os.Stderr, "kstatus-check: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
}

func checkInput(name string, out io.Writer) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			continue // an empty YAML document
		}
		// The unstructured JSON scheme keeps integers int64, as kstatus's accessors expect
		// (a plain map decode would make metadata.generation a float64).
		decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
		if err != nil {
			return err
		}
		switch obj := decoded.(type) {
		case *unstructured.UnstructuredList:
			for i := range obj.Items {
				if err := printVerdict(&obj.Items[i], out); err != nil {
					return err
				}
			}
		case *unstructured.Unstructured:
			if err := printVerdict(obj, out); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected object %T", decoded)
		}
	}
}

func printVerdict(u *unstructured.Unstructured, out io.Writer) error {
	result, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
	}
	line, err := json.Marshal(verdict{
		Kind:      u.GetKind(),
		Namespace: u.GetNamespace(),
		Name:      u.GetName(),
		Status:    result.Status.String(),
		Message:   result.Message,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", line)
	return err
}
