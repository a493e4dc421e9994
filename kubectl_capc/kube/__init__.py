"""The Kubernetes adapter: kubeconfig, clients, reads, writes and watches.

The only package that talks to Kubernetes API servers and imports the kubernetes client library.
"""
