# Finds every dependency from Debian 12 packages. Where Debian ships no CMake config
# (OpenBLAS's is for the static build only, SentencePiece has pkg-config only) cmake/Find*.cmake
# does the work.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(OpenBLAS REQUIRED)
find_package(SentencePiece REQUIRED)
find_package(zstd REQUIRED)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
