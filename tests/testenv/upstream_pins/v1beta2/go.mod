// Upstream releases whose CRDs and cluster templates the v1beta2 test-bed profile installs: a CAPI
// release that stores v1beta2, and the CAPC release the plugin targets. No Go code here: the go command
// downloads the modules and verifies them against go.sum.
module kubectl-capc.test/upstream/v1beta2

go 1.22

require (
	sigs.k8s.io/cluster-api v1.14.0
	sigs.k8s.io/cluster-api-provider-cloudstack v0.6.1
)
