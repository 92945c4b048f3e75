// A minimal controller-runtime operator for the status-only comparison (bench/controller-runtime.ts):
// it watches PublishedRealms (the CRD in crds/) and writes Ready=True with observedGeneration,
// and nothing else. Client-side rate limiting is off (QPS -1), leader election, metrics and
// probes are off, so the numbers are the controller machinery and the API server alone.
//
// Flags: --namespace (only that namespace), --workers (MaxConcurrentReconciles).
// It prints "converged <n>" to stderr each time the count of objects it wrote grows past a
// thousand, and serves nothing; the bench times convergence with its own watch client.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

var gvk = schema.GroupVersionKind{Group: "realm-operator.dev", Version: "v1alpha1", Kind: "PublishedRealm"}

type statusOnly struct {
	client client.Client
}

func (r *statusOnly) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var conditions []metav1.Condition
	if raw, found, _ := unstructured.NestedSlice(obj.Object, "status", "conditions"); found {
		for _, item := range raw {
			m, ok := item.(map[string]interface{})
			if !ok {
				continue
			}
			c := metav1.Condition{}
			c.Type, _ = m["type"].(string)
			c.Status = metav1.ConditionStatus(fmt.Sprint(m["status"]))
			c.Reason, _ = m["reason"].(string)
			c.Message, _ = m["message"].(string)
			if g, ok := m["observedGeneration"].(int64); ok {
				c.ObservedGeneration = g
			}
			if t, ok := m["lastTransitionTime"].(string); ok {
				_ = c.LastTransitionTime.UnmarshalQueryParameter(t)
			}
			conditions = append(conditions, c)
		}
	}
	generation := obj.GetGeneration()
	if ready := meta.FindStatusCondition(conditions, "Ready"); ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == generation {
		return ctrl.Result{}, nil
	}
	meta.SetStatusCondition(&conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Published", Message: "status-only benchmark", ObservedGeneration: generation})
	out := make([]interface{}, 0, len(conditions))
	for _, c := range conditions {
		out = append(out, map[string]interface{}{
			"type": c.Type, "status": string(c.Status), "reason": c.Reason, "message": c.Message,
			"observedGeneration": c.ObservedGeneration, "lastTransitionTime": c.LastTransitionTime.UTC().Format("2006-01-02T15:04:05Z"),
		})
	}
	if err := unstructured.SetNestedSlice(obj.Object, out, "status", "conditions"); err != nil {
		return ctrl.Result{}, err
	}
	// PUT on the status subresource with the cached resourceVersion, as ours does; a conflict is retried with backoff.
	return ctrl.Result{}, r.client.Status().Update(ctx, obj)
}

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace")
	workers := flag.Int("workers", 4, "MaxConcurrentReconciles")
	flag.Parse()
	log.SetLogger(zap.New(zap.UseDevMode(false), zap.Level(zapLevelError())))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = -1 // client-side rate limiting off
	cfg.Burst = 1 << 20
	options := ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	}
	if *namespace != "" {
		options.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg, options)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	err = ctrl.NewControllerManagedBy(mgr).
		For(obj, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: *workers}).
		Complete(&statusOnly{client: mgr.GetClient()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "controller-runtime peer starting")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}
