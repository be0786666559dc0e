// Package k8s_test checks the deployment files against the real schemas:
// every manifest in k8s/ and every manifest the Helm chart renders decodes
// strictly (unknown fields are errors) into k8s.io/api types, the Istio
// files into istio.io/api types, and the policies they carry validate. It is
// a module of its own so that k8s.io and istio.io stay out of the server's
// dependency graph.
package k8s_test
