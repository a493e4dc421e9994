// Command controller-manager runs the real kube-controller-manager of the pinned Kubernetes release
// for a workload cluster of the test bed; every flag is passed through unchanged.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
