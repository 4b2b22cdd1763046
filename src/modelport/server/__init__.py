"""The model server: TF Serving REST, Open Inference Protocol v2 (REST and gRPC), batching, metrics."""
