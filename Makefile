# kubezonnet: `make` builds both binaries; `make test` installs dependencies (make deps), builds
# and runs every test; `make bench` prints the benchmark table; `make demo` runs the demo.

CC	?= cc
CLANG	?= clang
BPFTOOL	?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
ARCH	:= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
GIT_REV	:= $(shell git rev-parse --short HEAD 2>/dev/null)
# RELEASE names the image (kubezonnet:RELEASE, as deploy.yaml says); VERSION adds the commit.
RELEASE	:= 0.1.0
VERSION	:= $(RELEASE)$(if $(GIT_REV),+$(GIT_REV))

CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -Wall -Wextra -Werror
# Reproducible: the build directory is not recorded (debug info, __FILE__), so any two
# checkouts of one commit build byte-identical binaries (the image digest depends on it).
REPRO_FLAGS := -ffile-prefix-map=$(CURDIR)=.
CFLAGS	+= $(REPRO_FLAGS)
CPPFLAGS += -D_GNU_SOURCE -I. -Ibuild -DKUBEZONNET_VERSION='"$(VERSION)"'
# libbpf, libelf and zlib are linked statically: the binaries need only glibc at run time.
STATIC_LIBS := -Wl,-Bstatic -lbpf -lelf -lz -Wl,-Bdynamic
SERVER_LIBS := -Wl,-Bstatic -lssl -lcrypto -lz -Wl,-Bdynamic -pthread
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ibpf $(REPRO_FLAGS)

BINARIES := kubezonnet-agent kubezonnet-server
UNIT_TESTS := $(patsubst test/%.c,build/test/%,$(wildcard test/*_test.c))
BENCHES := $(patsubst bench/%.c,build/bench/%,$(filter-out %.bpf.c,$(wildcard bench/*.c)))
HEADERS := $(wildcard *.h) $(wildcard k8s/*.h)
# Modules linked into the server and the unit tests.
MODULES := $(filter-out agent.c server.c ingest.c,$(wildcard *.c)) $(wildcard k8s/*.c)

.PHONY: all deps test unit-tests asan bench demo demo-stop fuzz format check-format clean
.DELETE_ON_ERROR:

all: $(BINARIES)

deps:
	@./deps.sh

build build/test build/bench:
	@mkdir -p $@

build/kubezonnet.bpf.o: bpf/kubezonnet.bpf.c bpf/kubezonnet.h bpf/kubezonnet_parse.h bpf/vmlinux.h | build
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

build/kubezonnet.skel.h: build/kubezonnet.bpf.o
	$(BPFTOOL) gen skeleton $< name kubezonnet_bpf > $@

build/bench.bpf.o: bench/bench.bpf.c bpf/kubezonnet.h bench/parse_yardstick.h bpf/vmlinux.h | build
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

build/bench.skel.h: build/bench.bpf.o
	$(BPFTOOL) gen skeleton $< name bench_bpf > $@

build/floor.bpf.o: bench/floor.bpf.c bpf/kubezonnet.h bpf/kubezonnet_parse.h bpf/vmlinux.h | build
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

build/floor.skel.h: build/floor.bpf.o
	$(BPFTOOL) gen skeleton $< name floor_bpf > $@

# The agent's own modules (it links no OpenSSL: sha256.c is its HMAC).
AGENT_MODULES := sha256.c secret.c
kubezonnet-agent: agent.c $(AGENT_MODULES) build/kubezonnet.skel.h $(HEADERS) bpf/kubezonnet.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ agent.c $(AGENT_MODULES) $(STATIC_LIBS)

kubezonnet-server: server.c ingest.c $(MODULES) $(HEADERS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ server.c ingest.c $(MODULES) $(SERVER_LIBS)

build/test/%: test/%.c test/test.h $(MODULES) $(HEADERS) | build/test
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(MODULES) $(STATIC_LIBS) $(SERVER_LIBS)

build/bench/%: bench/%.c bench/bench.h $(HEADERS) | build/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIBS) -lm

build/bench/server_bench: bench/server_bench.c bench/bench.h $(HEADERS) | build/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(MODULES) $(SERVER_LIBS)

build/bench/k8s_bench: bench/k8s_bench.c bench/bench.h $(HEADERS) $(MODULES) | build/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(filter-out k8s/client.c,$(MODULES)) $(SERVER_LIBS)

build/bench/bpf_bench: build/bench.skel.h build/floor.skel.h build/kubezonnet.skel.h bpf/kubezonnet.h build/before.skel.h test/bpf_run.h

# bench/bpf_bench's "before #15" rows: the counting program as it was before issue #15 made
# the common case cheaper, taken from git (commit BENCH_BEFORE); without the history, those
# rows are left out.
BENCH_BEFORE := aa9f0cd
build/before.skel.h: | build
	@rm -rf build/before build/before.skel.h && mkdir -p build/before
	@if git archive $(BENCH_BEFORE) bpf 2>/dev/null | tar -x -C build/before 2>/dev/null; then \
		$(CLANG) $(BPF_CFLAGS) -c build/before/bpf/kubezonnet.bpf.c -o build/before.bpf.o && \
		$(BPFTOOL) gen skeleton build/before.bpf.o name before_bpf > $@; \
	else \
		echo "no git history of $(BENCH_BEFORE): bench/bpf_bench runs without the program before #15"; \
	fi
build/bench/drain_bench: bench/drain_bench.c bench/bench.h $(HEADERS) agent.c $(AGENT_MODULES) build/kubezonnet.skel.h bpf/kubezonnet.h | build/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(AGENT_MODULES) $(STATIC_LIBS) -lm
build/bench/server_bench: server.c ingest.c $(MODULES)

build/test/bpf_test: build/kubezonnet.skel.h bpf/kubezonnet.h test/bpf_run.h

# BPF programs test/agent_cgroup.sh loads besides the agent's (host routing at tc, a
# connect-time Service load balancer), against the system's UAPI headers.
TEST_BPF := build/test/hostroute.bpf.o build/test/connect4.bpf.o
build/test/%.bpf.o: test/%.bpf.c | build/test
	$(CLANG) $(filter-out -Ibpf,$(BPF_CFLAGS)) -I/usr/include/$(shell $(CC) -dumpmachine) -c $< -o $@

unit-tests: $(UNIT_TESTS)
# test/server_scale.sh drives the server with many simulated agents (bench/agentsim.c).
unit-tests: build/bench/agentsim
unit-tests: $(TEST_BPF)

# libFuzzer targets (clang, AddressSanitizer, UndefinedBehaviorSanitizer); test/fuzz.sh runs them.
FUZZ_FLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZERS := $(patsubst test/fuzz/%.c,build/fuzz/fuzz-%,$(wildcard test/fuzz/*.c))
build/fuzz:
	@mkdir -p $@
build/fuzz/fuzz-%: test/fuzz/%.c $(MODULES) $(HEADERS) | build/fuzz
	$(CLANG) $(FUZZ_FLAGS) -I. -o $@ $< $(MODULES) -lssl -lcrypto -lz
fuzz: $(FUZZERS)

# A sanitized copy of the server and of every unit test that needs no BPF skeleton, under
# AddressSanitizer (LeakSanitizer included) and UndefinedBehaviorSanitizer; test/sanitizers.sh
# runs them. Its own flags and directory: the release build above is left as it is. Linked
# dynamically, as the sanitizer runtimes want; each module is compiled once. Clang, not GCC:
# GCC's UBSan beside ASan writes its reports to stderr whatever log_path says, and leaves
# float-cast-overflow out of "undefined". No -Werror: the release build is the warning gate,
# and clang's warnings differ from GCC's (-Wstring-concatenation takes test/k8s_test.c's one
# string written on two lines for a missing comma).
ASAN_DIR := build/asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g
ASAN_CFLAGS := -std=c11 -Wall -Wextra -Wno-string-concatenation $(ASAN_FLAGS)
ASAN_LIBS := -lssl -lcrypto -lz -pthread
ASAN_OBJS := $(patsubst %.c,$(ASAN_DIR)/obj/%.o,$(MODULES))
ASAN_UNIT_TESTS := $(patsubst test/%.c,$(ASAN_DIR)/test/%,$(filter-out test/bpf_test.c,$(wildcard test/*_test.c)))

$(ASAN_DIR)/obj/%.o: %.c $(HEADERS) Makefile
	@mkdir -p $(@D)
	$(CLANG) $(CPPFLAGS) $(ASAN_CFLAGS) -c -o $@ $<

$(ASAN_DIR)/kubezonnet-server: $(ASAN_DIR)/obj/server.o $(ASAN_DIR)/obj/ingest.o $(ASAN_OBJS)
	$(CLANG) $(ASAN_FLAGS) $(LDFLAGS) -o $@ $^ $(ASAN_LIBS)

$(ASAN_DIR)/test/%: test/%.c test/test.h $(ASAN_OBJS) $(HEADERS)
	@mkdir -p $(@D)
	$(CLANG) $(CPPFLAGS) $(ASAN_CFLAGS) $(LDFLAGS) -o $@ $< $(ASAN_OBJS) $(ASAN_LIBS)

asan: $(ASAN_DIR)/kubezonnet-server $(ASAN_UNIT_TESTS)

# Dependencies first (a separate make, so that nothing is compiled before they exist).
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all unit-tests asan
	@test/run

bench:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all $(BENCHES)
	@bench/run

demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	@DEMO_SECONDS=$(DEMO_SECONDS) DEMO_REPORT=$(DEMO_REPORT) DEMO_K8S=$(DEMO_K8S) DEMO_OVERLAY=$(DEMO_OVERLAY) DEMO_HOOK=$(DEMO_HOOK) demo/demo.sh

# deploy.yaml is deploy/namespace.yaml, server.yaml and agent.yaml in one file.
deploy.yaml: deploy/gen-deploy-yaml.sh deploy/namespace.yaml deploy/server.yaml deploy/agent.yaml
	deploy/gen-deploy-yaml.sh >$@

demo-stop:
	@demo/demo.sh stop

# ---- The image: one OCI image holding both binaries and only what they need at run time (glibc,
# CA bundle, users) from Debian packages, written by image/build.py without a base image or a
# daemon. Deterministic: the same commit gives the same digest. `make image-push IMAGE=reg/name:tag`
# pushes it with skopeo (IMAGE_PUSH_FLAGS, e.g. --dest-creds U:P or --dest-tls-verify=false).
IMAGE	?= kubezonnet:$(RELEASE)
IMAGE_ARCHIVE := build/kubezonnet-image.tar
# The source label: the remote 'origin' as an https URL (none for a local path).
IMAGE_SOURCE ?= $(shell git remote get-url origin 2>/dev/null | sed -E 's|^git@([^:]+):|https://\1/|; s|\.git$$||' | grep '^https://')
IMAGE_PUSH_FLAGS ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)

.PHONY: image image-push
image: all | build
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) python3 image/build.py --out $(IMAGE_ARCHIVE) \
		--name '$(IMAGE)' --version '$(VERSION)' --revision '$(GIT_COMMIT)' \
		--source '$(IMAGE_SOURCE)' --license LICENSE $(BINARIES)

image-push: image
	skopeo copy --preserve-digests $(IMAGE_PUSH_FLAGS) oci-archive:$(IMAGE_ARCHIVE) 'docker://$(IMAGE)'
# ---- end of the image

format:
	clang-format -i *.c *.h k8s/*.c k8s/*.h bpf/*.c bpf/kubezonnet.h bpf/kubezonnet_parse.h test/*.c test/*.h test/fuzz/*.c bench/*.c bench/*.h

check-format:
	@clang-format --dry-run -Werror *.c *.h k8s/*.c k8s/*.h bpf/*.c bpf/kubezonnet.h bpf/kubezonnet_parse.h test/*.c test/*.h test/fuzz/*.c bench/*.c bench/*.h

clean:
	rm -rf build $(BINARIES)
