"""Generated protobuf modules; rebuild: python -m contentgen_service.codegen."""
