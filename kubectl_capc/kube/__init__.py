"""The Kubernetes adapter: kubeconfig, clients, reads, writes and watches.

The only package that imports the kubernetes client.
"""
