"""The apiVersion of every document the plugin prints with `-o json|yaml` (plans, descriptions,
reports, histories), so that scripts can tell them apart from Kubernetes objects and their versions."""

API_VERSION = "capc.kubectl.io/v1alpha1"
