# OpenCL for the tests and one example only.  The library never links the
# loader: loading libOpenCL makes every installed ICD load into the caller's
# process (tests/opencl/check-no-loader.sh keeps it so).  Optional: without
# the loader and headers, and in static builds (the VM's initramfs: there is
# no static loader, and it dlopens its ICDs anyway), nothing here is built.
if(COH_STATIC_PROGRAMS)
  set(OpenCL_FOUND FALSE)
  set(COH_OPENCL_MISSING "not linked into static programs")
else()
  find_package(OpenCL QUIET)
  set(COH_OPENCL_MISSING "loader or headers not found (Debian: ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd)")
endif()

# The one .icd file the OpenCL programs run under ctest let the loader see:
# PoCL's CPU device by default, so that a test never loads a GPU vendor's ICD.
find_file(COH_OPENCL_ICD pocl.icd PATHS /etc/OpenCL/vendors NO_DEFAULT_PATH
  DOC "The .icd file OpenCL tests run with (default: PoCL's)")
set(COH_OPENCL_DIR ${PROJECT_BINARY_DIR}/opencl)
file(MAKE_DIRECTORY ${COH_OPENCL_DIR}/vendors ${COH_OPENCL_DIR}/pocl-cache)
if(COH_OPENCL_ICD)
  configure_file(${COH_OPENCL_ICD} ${COH_OPENCL_DIR}/vendors/ COPYONLY)
endif()

# coh_opencl_test(NAME COMMAND...): a ctest entry that sees only that ICD and
# gives PoCL a writable cache (without one PoCL answers "device not found");
# exit 77 is a skip.
function(coh_opencl_test name)
  add_test(NAME ${name} COMMAND ${ARGN})
  set(env OCL_ICD_VENDORS=${COH_OPENCL_DIR}/vendors POCL_CACHE_DIR=${COH_OPENCL_DIR}/pocl-cache)
  if(COH_SANITIZE MATCHES address)
    # PoCL's own one-time allocations (its LLVM, its device) are not ours
    list(APPEND env LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/opencl/lsan.supp)
  endif()
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "${env}")
endfunction()
