# MPI for one example and its tests only; the library never links it.
# Optional: without an MPI whose C bindings CMake can find, and in static
# builds (Debian ships no static Open MPI), nothing here is built.
if(COH_STATIC_PROGRAMS)
  set(MPI_C_FOUND FALSE)
  set(COH_MPI_MISSING "is not linked into static programs")
else()
  find_package(MPI COMPONENTS C QUIET)
  set(COH_MPI_MISSING "was not found with its C bindings (Debian: openmpi-bin libopenmpi-dev)")
endif()

# How the tests launch ranks.  The flags are Open MPI's (4.1 on Debian 12):
# CI runs as root on a 2-core machine, so root is allowed, ranks may
# outnumber cores and are not bound.  The environment keeps Open MPI on one
# host and off the network: the shared-memory and loopback transports, the
# ob1 messaging layer (no UCX probing of absent devices), one-sided
# operations through osc/rdma over those transports (osc/pt2pt where rdma
# declines, as for a single rank), and no remote launch agent.
set(COH_MPI_NP 3 CACHE STRING "Ranks the MPI tests start")
set(COH_MPI_ENV OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_osc=rdma,pt2pt OMPI_MCA_plm_rsh_agent=)
set(COH_MPI_RUNS FALSE)
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE mpiexec_version ERROR_QUIET TIMEOUT 30)
  if(mpiexec_version MATCHES "Open MPI|OpenRTE|open-mpi\\.org")
    set(COH_MPI_RUNS TRUE)
  else()
    set(COH_MPI_MISSING "launcher ${MPIEXEC_EXECUTABLE} is not the Open MPI one whose flags the tests pass")
  endif()
elseif(MPI_C_FOUND)
  set(COH_MPI_MISSING "has no launcher (mpiexec) to start the ranks")
endif()

# coh_mpi_test(NAME PROGRAM [ARGS...] [ENV VAR=VALUE...]): PROGRAM under
# mpirun with COH_MPI_NP ranks, on the host backend unless ENV says otherwise;
# exit 77 is a skip.  Where the tests cannot run, a test that skips and says
# why.
function(coh_mpi_test name program)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "ENV")
  if(COH_MPI_RUNS)
    add_test(NAME ${name} COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe --bind-to none
      ${MPIEXEC_NUMPROC_FLAG} ${COH_MPI_NP} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${program}> ${MPIEXEC_POSTFLAGS}
      ${arg_UNPARSED_ARGUMENTS})
    set(env ${COH_MPI_ENV} COH_BACKENDS=host ${arg_ENV})
    if(COH_SANITIZE MATCHES address)
      # Open MPI 4.1 keeps allocations past MPI_Finalize in components it
      # has unloaded by then: LeakSanitizer cannot name their module, so no
      # suppression matches them.  Leak checks stay off here only; ASan's
      # and UBSan's other checks stay on.
      list(APPEND env ASAN_OPTIONS=detect_leaks=0)
    endif()
  else()
    add_test(NAME ${name} COMMAND sh -c "echo '${name}: skipped: MPI ${COH_MPI_MISSING}'; exit 77")
    set(env "")
  endif()
  # one MPI job at a time: three ranks already fill a 2-core machine
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120 RESOURCE_LOCK mpi
    LABELS "examples;mpi" ENVIRONMENT "${env}")
endfunction()
