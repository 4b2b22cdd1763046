"""The road onto a cluster: `build` makes an OCI image of a model server, `render` turns our
Deployment, Service and HorizontalPodAutoscaler files into Kubernetes manifests."""
