# Thin wrapper over CMake. `make run` and `make test` are the two commands the README
# opens with; both install missing Debian packages first (as root).
BUILD      ?= build
BUILD_SAN  ?= build-san
JOBS       ?= $(shell nproc)
CMAKE_GEN  := -G Ninja

PREFIX     ?= /usr/local
BUILD_DEB  ?= build-deb
PULL_DEMO  := Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M
PULL_FILE  := models/qwen2.5-0.5b-instruct-q4_k_m.gguf

.PHONY: all build run cluster-demo install deb deps-deb generate test test-fast test-san test-arm bench bench-tp bench-ep bench-embed bench-tenants bench-tls deps deps-test fuzz format lint clean

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job: the OpenAI-compatible server on the built-in demo model (random weights)
# unless MODEL=path.gguf is given; PORT=8080 by default. Ctrl-C stops it gracefully.
# Without MODEL it also prints, beside the URL, the one command that pulls and serves a real
# small model instead (sov pull: docs/DEPLOY.md).
run: build
	@$(if $(MODEL),true,printf '%s\n' "sov: the demo model answers gibberish; a real small model (Qwen2.5 0.5B Instruct Q4_K_M, ~0.5 GB):" \
	  "     ./$(BUILD)/sov pull $(PULL_DEMO) -o models && ./$(BUILD)/sov serve -m $(PULL_FILE) --port $(or $(PORT),8080)")
	./$(BUILD)/sov serve $(if $(MODEL),-m $(MODEL)) --port $(or $(PORT),8080)

# Three replicas of `make run` behind HAProxy, sharing a throw-away PostgreSQL (keys, quotas,
# audit log) on loopback; HAProxy on PORT (8080). Ctrl-C stops everything (docs/REPLICAS.md).
cluster-demo: build
	@scripts/deps.sh cluster
	@BUILD=$(BUILD) PORT=$(or $(PORT),8080) scripts/cluster-demo.sh

# The binary, man page, systemd unit and default configuration under PREFIX (/usr/local),
# staged under DESTDIR when given: make install PREFIX=/usr DESTDIR=/tmp/stage
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)

# A Debian package (CPack): /usr/bin/sov, sov(1), sov.service, /etc/sov/sov.conf; its
# postinst makes the sov user and /var/lib/sov (docs/DEPLOY.md). Built in $(BUILD_DEB).
deb: deps-deb
	@cmake -S . -B $(BUILD_DEB) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DSOV_TESTS=OFF >/dev/null
	@cmake --build $(BUILD_DEB) -j $(JOBS)
	cd $(BUILD_DEB) && cpack -G DEB
	@ls -l $(BUILD_DEB)/sov_*.deb

deps-deb:
	@scripts/deps.sh deb

# One generation on the command line instead of a server.
generate: build
	./$(BUILD)/sov run $(if $(MODEL),-m $(MODEL)) -p "$(or $(PROMPT),Once upon a time)" -n $(or $(N),64)

# Every test: the release build, the whole suite again under ASan+UBSan, and the kernel
# tests cross-built for AArch64 and run under qemu, with and without the dot product
# extension.
test: test-fast test-san test-arm

test-fast: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-san: deps-test
	@cmake -S . -B $(BUILD_SAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOV_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE slow

BUILD_ARM ?= build-arm
test-arm: deps-test
	@cmake -S . -B $(BUILD_ARM) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release -DSOV_KERNEL_ONLY=ON \
	  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
	@cmake --build $(BUILD_ARM) -j $(JOBS)
	cd $(BUILD_ARM) && QEMU_CPU=max ctest --output-on-failure -j $(JOBS)
	cd $(BUILD_ARM) && QEMU_CPU=cortex-a72 ctest --output-on-failure -j $(JOBS)

fuzz: deps-test
	@CC=clang cmake -S . -B build-fuzz $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOV_FUZZ=ON -DSOV_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@echo "fuzz targets: build-fuzz/fuzz/fuzz_* (one per parser of outside input; the comment at the top of"
	@echo "each fuzz/fuzz_*.c names its seed corpus under tests/),"
	@echo "e.g. build-fuzz/fuzz/fuzz_gguf -max_total_time=60 build/tests/tmp/gguf_corpus (written by the gguf tests)"

# Speed: synthetic 1.1B models (Q4_0, Q8_0), a 134M model and the shared real models;
# LLAMA_BENCH=/path/to/llama-bench adds llama.cpp's figures side by side (docs/PERFORMANCE.md).
bench: build
	bench/run.sh

# Tensor parallelism: sov bench with TP 1, 2 and 4 MPI ranks over loopback TCP and shared
# memory (bench/tp.sh, docs/TP.md; needs mpirun).
bench-tp: build
	bench/tp.sh

# Expert parallelism: sov bench of a MoE model with EP 1, 2 and 4 MPI ranks and each
# rank's peak RSS (bench/ep.sh, docs/TP.md; needs mpirun; -m FILE for another model).
bench-ep: build
	bench/ep.sh

# Embeddings throughput, LM head skipped or not, engine and server (bench/embed.sh).
bench-embed: build
	bench/embed.sh

# What tenants cost (auth and limits on/off, SQLite and PostgreSQL) and what fair
# scheduling buys (bench/fairness.py); needs wrk (apt-get install wrk).
bench-tenants: build
	bench/tenants.sh

# What HTTPS costs: plain against TLS, keep-alive and a connection per request (needs wrk).
bench-tls: build
	bench/tls.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint: build
	cppcheck --quiet --enable=warning,performance,portability --std=c11 --error-exitcode=1 \
	  --suppress=missingIncludeSystem -I include -I src src

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_ARM) $(BUILD_DEB) build-fuzz
