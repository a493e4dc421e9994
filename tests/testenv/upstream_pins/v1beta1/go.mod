// Upstream releases whose CRDs and cluster templates the v1beta1 test-bed profile installs: the last
// CAPI release line that stores v1beta1, and the CAPC release the plugin targets. No Go code here: the
// go command downloads the modules and verifies them against go.sum.
module kubectl-capc.test/upstream/v1beta1

go 1.22

require (
	sigs.k8s.io/cluster-api v1.10.10
	sigs.k8s.io/cluster-api-provider-cloudstack v0.6.1
)
