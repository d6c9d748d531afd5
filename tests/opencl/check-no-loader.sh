#!/bin/sh
# The library must not link the OpenCL loader (or any ICD): loading it would
# load every installed vendor's ICD into each program that uses libcoherent.
#   check-no-loader.sh path/to/libcoherent.so
set -u
lib=$1
if ! command -v readelf >/dev/null 2>&1; then
  echo "no_opencl_in_library: readelf not found (binutils) (skip)"
  exit 77
fi
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
if [ -z "$needed" ]; then
  echo "no_opencl_in_library: no NEEDED entries read from $lib" >&2
  exit 1
fi
bad=$(printf '%s\n' "$needed" | grep -iE 'opencl|pocl' || true)
if [ -n "$bad" ]; then
  echo "no_opencl_in_library: $lib needs $bad" >&2
  exit 1
fi
echo "no_opencl_in_library: $lib needs only:" $needed
