#!/bin/bash
# Run here (Debian, network to the Debian mirror) before a device run: puts the
# Debian packages the build needs into .devdeps/debs, which the device tool
# carries (it is ignored by git: echo /.devdeps/ >> .git/info/exclude).
# nvidia.sh unpacks them only where the GPU machine lacks the tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$root/.devdeps/debs"
cd "$root/.devdeps/debs"
apt-get download libnuma1 libnuma-dev pkgconf pkgconf-bin libpkgconf3 check libsubunit0 libsubunit-dev
# the OpenCL loader and headers, for test_opencl on the GPU's own OpenCL (nvidia.sh)
apt-get download ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers
ls -la
