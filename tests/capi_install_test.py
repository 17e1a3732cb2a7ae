#!/usr/bin/python3
"""`cmake --install` into a temporary prefix, then use what was installed as a user would:

  - examples/cmake_consumer, configured with find_package(stackllama) (C++ and C programs);
  - examples/pkgconfig_consumer, built with `pkg-config --cflags --libs stackllama`;
  - the installed programs (stackllama, stackllama-convert) and the installed Python module
    (from the prefix's site-packages);

each run on the default model, printing the text the C++ API generated (capi_reference).

    capi_install_test.py --build DIR --cmake CMAKE --model DIR --expect FILE --work DIR
                         [--python PY --python-dir REL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
failures = 0


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> bytes:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    p = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, cwd=cwd, timeout=600)
    if p.returncode != 0:
        sys.stdout.write(p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace"))
        raise SystemExit(f"FAIL: exit code {p.returncode}")
    return p.stdout


def expect(what: str, got: bytes, want: bytes) -> None:
    global failures
    if got == want:
        print(f"OK: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}: got {got!r}, expected {want!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--model", required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", default=None)
    ap.add_argument("--python-dir", default=None, help="site-packages relative to the prefix")
    a = ap.parse_args()
    want = Path(a.expect).read_bytes()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    prefix = work / "prefix"
    run([a.cmake, "--install", a.build, "--prefix", prefix])

    # What is installed.
    libs = sorted(p.name for p in prefix.rglob("libstackllama.so*"))
    print("installed libraries:", libs)
    for name in ("libstackllama.so", "libstackllama.so.0"):
        if name not in libs:
            raise SystemExit(f"FAIL: {name} is not installed (SOVERSION link)")
    for header in ("stackllama/stackllama.h", "stackllama/stackllama_version.h",
                   "stackllama/stackllama.hpp", "stackllama/version.hpp"):
        if not (prefix / "include" / header).is_file():
            raise SystemExit(f"FAIL: include/{header} is not installed")
    pc_dirs = [p.parent for p in prefix.rglob("stackllama.pc")]
    configs = list(prefix.rglob("stackllamaConfig.cmake"))
    if not pc_dirs or not configs:
        raise SystemExit("FAIL: stackllama.pc or stackllamaConfig.cmake is not installed")

    # The CLI runs from the prefix (it finds the library through its rpath).
    cli = prefix / "bin" / "stackllama"
    out = run([cli, "-m", a.model, "-p", "How do I sort a dict?", "-n", "32", "-t", "2"])
    expect("installed CLI", out, want)
    convert = prefix / "bin" / "stackllama-convert"
    if convert.exists():
        run([convert, "--help"])
        print("OK: installed stackllama-convert runs")

    # find_package(stackllama).
    env = dict(os.environ)
    env.pop("CMAKE_PREFIX_PATH", None)
    cbuild = work / "cmake_consumer"
    run([a.cmake, "-S", SOURCE / "examples" / "cmake_consumer", "-B", cbuild,
         f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"], env=env)
    run([a.cmake, "--build", cbuild], env=env)
    expect("cmake_consumer (C++)", run([cbuild / "cmake_consumer_cpp", a.model]), want)
    expect("cmake_consumer (C)", run([cbuild / "cmake_consumer_c", a.model]), want)

    # pkg-config.
    env = dict(os.environ, PKG_CONFIG_PATH=":".join(str(d) for d in pc_dirs))
    version = run(["pkg-config", "--modversion", "stackllama"], env=env).decode().strip()
    print("pkg-config --modversion stackllama:", version)
    print("pkg-config --libs stackllama:",
          run(["pkg-config", "--libs", "stackllama"], env=env).decode().strip())
    pbuild = work / "pkgconfig_consumer"
    pbuild.mkdir(parents=True)
    run(["make", "-f", SOURCE / "examples" / "pkgconfig_consumer" / "Makefile", f"OUT={pbuild}"],
        env=env)
    expect("pkgconfig_consumer", run([pbuild / "pkgconfig_consumer", a.model]), want)

    # The Python module from the prefix's site-packages.
    if a.python and a.python_dir:
        site = prefix / a.python_dir
        if not (site / "stackllama" / "__init__.py").is_file():
            raise SystemExit(f"FAIL: the Python package is not installed in {site}")
        env = dict(os.environ, PYTHONPATH=str(site), PYTHONIOENCODING="utf-8")
        code = ("import sys, stackllama; assert stackllama.__file__.startswith(sys.argv[2]), "
                "stackllama.__file__; m = stackllama.Model(sys.argv[1], n_threads=2); "
                "sys.stdout.write(stackllama.Generator(m).generate('How do I sort a dict?', "
                "max_new_tokens=32))")
        expect("installed Python module", run([a.python, "-c", code, a.model, str(site)], env=env),
               want)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
