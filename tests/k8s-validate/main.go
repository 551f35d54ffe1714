// k8s-validate checks rendered Kubernetes manifests (multi-document YAML on stdin, as `helm
// template` prints them) the way kube-apiserver's decoder would: each document must name a
// kind this program knows (the built-in groups the chart uses, cert-manager's Certificate and
// the Prometheus operator's ServiceMonitor, from their own Go types) and decode strictly into
// it, so an unknown or misspelt field, a duplicate field or a value of the wrong type is an
// error. Then a few of the apiserver's validation rules that a decode does not apply: a
// workload's selector matches its pod labels, every volume mount names a volume, every probe's
// named port is a container port, a Service's named targetPort is a port of the pods it
// selects, and a PodDisruptionBudget selects some workload of the manifests.
//
// Usage: helm template ... | k8s-validate. It prints one JSON line per object (kind, name,
// namespace, the containers' names, images and args, a ConfigMap's data), for tests to check
// what the manifests run, and exits 1 on the first document that fails, naming it.
//
// Why not kubeconform: it downloads its JSON schemas from GitHub at run time, which the
// machines this project is tested on cannot reach.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme,
		policyv1.AddToScheme, rbacv1.AddToScheme, cmv1.AddToScheme, monv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			fail("registering types: %v", err)
		}
	}
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})

	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	var objects []runtime.Object
	var summaries []summary
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("document %d: %v", n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			fail("document %d (%s): %v", n, firstSource(doc), err)
		}
		meta, ok := obj.(metav1.Object)
		if !ok || meta.GetName() == "" {
			fail("document %d (%s): %s has no metadata.name", n, firstSource(doc), gvk.Kind)
		}
		name := gvk.Kind + "/" + meta.GetName()
		if err := check(obj); err != nil {
			fail("%s (%s): %v", name, firstSource(doc), err)
		}
		objects = append(objects, obj)
		summaries = append(summaries, summarize(gvk.Kind, meta, obj))
	}
	if len(objects) == 0 {
		fail("no objects on stdin")
	}
	if err := crossCheck(objects); err != nil {
		fail("%v", err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, s := range summaries {
		if err := out.Encode(s); err != nil {
			fail("writing: %v", err)
		}
	}
}

type container struct {
	Name  string   `json:"name"`
	Image string   `json:"image"`
	Args  []string `json:"args"`
}

type summary struct {
	Kind       string            `json:"kind"`
	Name       string            `json:"name"`
	Namespace  string            `json:"namespace"`
	Containers []container       `json:"containers,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
}

func summarize(kind string, meta metav1.Object, obj runtime.Object) summary {
	s := summary{Kind: kind, Name: meta.GetName(), Namespace: meta.GetNamespace()}
	var pod *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *appsv1.Deployment:
		pod = &o.Spec.Template
	case *appsv1.StatefulSet:
		pod = &o.Spec.Template
	case *appsv1.DaemonSet:
		pod = &o.Spec.Template
	case *batchv1.CronJob:
		pod = &o.Spec.JobTemplate.Spec.Template
	case *corev1.ConfigMap:
		s.Data = o.Data
	}
	if pod != nil {
		for _, c := range pod.Spec.Containers {
			s.Containers = append(s.Containers, container{c.Name, c.Image, c.Args})
		}
	}
	return s
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "k8s-validate: "+format+"\n", args...)
	os.Exit(1)
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// The `# Source: chart/templates/x.yaml` line helm puts above each document.
func firstSource(doc []byte) string {
	for _, line := range strings.Split(string(doc), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "# Source: "); ok {
			return s
		}
	}
	return "no source line"
}

func check(obj runtime.Object) error {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return checkWorkload(o.Spec.Selector, &o.Spec.Template, nil)
	case *appsv1.StatefulSet:
		// A claim template is a volume of every replica.
		var claims []string
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		return checkWorkload(o.Spec.Selector, &o.Spec.Template, claims)
	case *appsv1.DaemonSet:
		return checkWorkload(o.Spec.Selector, &o.Spec.Template, nil)
	case *batchv1.CronJob:
		if o.Spec.Schedule == "" {
			return fmt.Errorf("spec.schedule: Required value")
		}
		return checkPod(&o.Spec.JobTemplate.Spec.Template, nil)
	case *corev1.Service:
		if len(o.Spec.Ports) == 0 {
			return fmt.Errorf("spec.ports: Required value")
		}
	case *policyv1.PodDisruptionBudget:
		if o.Spec.Selector == nil {
			return fmt.Errorf("spec.selector: Required value")
		}
		if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
			return fmt.Errorf("spec: exactly one of minAvailable and maxUnavailable must be set")
		}
	case *cmv1.Certificate:
		if o.Spec.SecretName == "" || o.Spec.IssuerRef.Name == "" {
			return fmt.Errorf("spec.secretName and spec.issuerRef.name: Required value")
		}
	case *monv1.ServiceMonitor:
		if len(o.Spec.Endpoints) == 0 {
			return fmt.Errorf("spec.endpoints: Required value")
		}
	}
	return nil
}

func checkWorkload(selector *metav1.LabelSelector, t *corev1.PodTemplateSpec, claims []string) error {
	if selector == nil {
		return fmt.Errorf("spec.selector: Required value")
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return fmt.Errorf("spec.selector: %v", err)
	}
	if sel.Empty() || !sel.Matches(labels.Set(t.Labels)) {
		return fmt.Errorf("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`")
	}
	return checkPod(t, claims)
}

func checkPod(t *corev1.PodTemplateSpec, claims []string) error {
	volumes := map[string]bool{}
	for _, c := range claims {
		volumes[c] = true
	}
	for _, v := range t.Spec.Volumes {
		volumes[v.Name] = true
	}
	if len(t.Spec.Containers) == 0 {
		return fmt.Errorf("spec.template.spec.containers: Required value")
	}
	for _, c := range append(append([]corev1.Container{}, t.Spec.InitContainers...), t.Spec.Containers...) {
		if c.Image == "" {
			return fmt.Errorf("container %s: image: Required value", c.Name)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Errorf("container %s: volumeMounts[%s]: Not found", c.Name, m.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for what, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				return fmt.Errorf("container %s: %s.httpGet.port: %q is not a port of the container", c.Name, what, p.HTTPGet.Port.StrVal)
			}
		}
	}
	return nil
}

// Rules that span objects: Services and PodDisruptionBudgets select pods of these manifests,
// and a named targetPort is a port of those pods.
func crossCheck(objects []runtime.Object) error {
	var pods []*corev1.PodTemplateSpec
	for _, obj := range objects {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			pods = append(pods, &o.Spec.Template)
		case *appsv1.StatefulSet:
			pods = append(pods, &o.Spec.Template)
		case *appsv1.DaemonSet:
			pods = append(pods, &o.Spec.Template)
		}
	}
	selected := func(sel labels.Selector) []*corev1.PodTemplateSpec {
		var out []*corev1.PodTemplateSpec
		for _, p := range pods {
			if sel.Matches(labels.Set(p.Labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	for _, obj := range objects {
		switch o := obj.(type) {
		case *corev1.Service:
			if len(o.Spec.Selector) == 0 {
				continue
			}
			matched := selected(labels.SelectorFromSet(o.Spec.Selector))
			if len(matched) == 0 {
				return fmt.Errorf("Service/%s: its selector matches no pods of these manifests", o.Name)
			}
			for _, sp := range o.Spec.Ports {
				if sp.TargetPort.StrVal == "" {
					continue
				}
				for _, p := range matched {
					if !hasPort(p, sp.TargetPort.StrVal) {
						return fmt.Errorf("Service/%s: targetPort %q is not a port of its pods", o.Name, sp.TargetPort.StrVal)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil {
				return fmt.Errorf("PodDisruptionBudget/%s: %v", o.Name, err)
			}
			if len(selected(sel)) == 0 {
				return fmt.Errorf("PodDisruptionBudget/%s: its selector matches no pods of these manifests", o.Name)
			}
		}
	}
	return nil
}

func hasPort(p *corev1.PodTemplateSpec, name string) bool {
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return true
			}
		}
	}
	return false
}
