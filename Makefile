# ljwx-ingest -- see README.md. `make run` starts the local pipeline, `make test`
# builds both variants and runs every test.

CC      ?= cc
PKGS    := hiredis libpq libcjson libuv
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

WARN    := -std=c11 -Wall -Wextra -Werror
CFLAGS_COMMON := $(WARN) -D_DEFAULT_SOURCE -g -MMD -MP -Icommon $(PKG_CFLAGS)
CFLAGS_REL    := $(CFLAGS_COMMON) -O2
CFLAGS_ASAN   := $(CFLAGS_COMMON) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -DLJ_TEST_HOOKS \
                 -fno-sanitize-recover=undefined
LDFLAGS_ASAN  := -fsanitize=address,undefined

COMMON_SRC   := $(wildcard common/*.c)
PRODUCER_SRC := $(wildcard producer/*.c)
CONSUMER_SRC := $(wildcard consumer/*.c)
IMPORT_SRC   := $(wildcard import/*.c)
NOTIFIER_SRC := $(wildcard notifier/*.c)
UNIT_SRC     := $(wildcard tests/unit/test_*.c)

REL  := build
ASAN := build/asan

objs = $(patsubst %.c,$(1)/%.o,$(2))

PRODUCER := ljwx-producer
CONSUMER := ljwx-consumer
IMPORT   := ljwx-import
NOTIFIER := ljwx-notifier
BINS_REL  := $(REL)/$(PRODUCER) $(REL)/$(CONSUMER) $(REL)/$(IMPORT) $(REL)/$(NOTIFIER)
BINS_ASAN := $(ASAN)/$(PRODUCER) $(ASAN)/$(CONSUMER) $(ASAN)/$(IMPORT) $(ASAN)/$(NOTIFIER)
UNIT_BINS := $(patsubst tests/unit/%.c,$(ASAN)/tests/%,$(UNIT_SRC))
# Small programs the integration tests drive (tests/tools/*.c, ASan build).
TOOLS_SRC := $(wildcard tests/tools/*.c)
TOOLS := $(patsubst tests/tools/%.c,$(ASAN)/tests/tools/%,$(TOOLS_SRC))

FUZZ_SECONDS ?= 60
FUZZ := build/fuzz/fuzz_request
FUZZ_SRC := tests/fuzz/fuzz_request.c producer/http_frame.c $(COMMON_SRC)

.PHONY: all asan deps run test unit integration integration-pgbouncer fuzz bench bench-consumer soak clean

all: $(BINS_REL)

asan: $(BINS_ASAN)

deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

# Fuzzing runs before the integration tests so that pytest's summary is the
# run's closing line.
test: deps
	@$(MAKE) --no-print-directory all asan $(UNIT_BINS) $(TOOLS) $(FUZZ) build/loadgen
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory integration-pgbouncer

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# PYTEST_ARGS selects tests, e.g. PYTEST_ARGS="tests/integration -k rollback".
# build/loadgen drives tests/integration/test_stress_shape.py.
PYTEST_ARGS ?= tests/integration
integration: $(BINS_ASAN) $(TOOLS) build/loadgen
	LJ_BIN_DIR=$(CURDIR)/$(ASAN) /usr/bin/python3 -m pytest -q $(PYTEST_ARGS)

# The store, redelivery, poison and partition tests again, every process of
# ours connected through a real PgBouncer in pool_mode=transaction
# (tests/integration/conftest.py: LJ_TEST_PGBOUNCER). About 100 s.
PGBOUNCER_TESTS ?= tests/integration/test_consumer.py tests/integration/test_reliability.py \
    tests/integration/test_compat.py tests/integration/test_retention.py
integration-pgbouncer: $(BINS_ASAN)
	LJ_TEST_PGBOUNCER=1 LJ_BIN_DIR=$(CURDIR)/$(ASAN) /usr/bin/python3 -m pytest -q \
	    $(PGBOUNCER_TESTS)

# Object files are kept (not intermediate), and builds print one line a file.
.SECONDARY:

# libFuzzer over request framing and body validation, bounded in time. New
# inputs go to a scratch corpus; the seeds in tests/fuzz/corpus stay as they are.
fuzz: $(FUZZ)
	@rm -rf build/fuzz/corpus && mkdir -p build/fuzz/corpus
	$(FUZZ) -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=build/fuzz/ \
	    -print_final_stats=1 build/fuzz/corpus tests/fuzz/corpus

$(FUZZ): $(FUZZ_SRC) $(wildcard common/*.h producer/http_frame.h)
	@mkdir -p $(dir $@)
	@echo "  LD fuzz $@"
	@clang -std=c11 -D_DEFAULT_SOURCE -g -O1 -Icommon -Iproducer $(PKG_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    $(FUZZ_SRC) -o $@ $(PKG_LIBS)

# Benchmarks, not tests (CI does not run them). `make bench` runs every
# workload next to its reference in one invocation; BENCH_ARGS=--quick for a
# shorter run.
bench: deps all build/loadgen
	@scripts/bench_deps.sh
	/usr/bin/python3 tests/bench/bench.py $(BENCH_ARGS)

build/loadgen: tests/bench/loadgen.c
	@mkdir -p build
	@echo "  LD      $@"
	@$(CC) $(WARN) -D_GNU_SOURCE -O2 $< -o $@ $(PKG_CFLAGS) -luv

# A long run with a fault every few minutes: RSS, descriptors, lag and
# pending each minute (build/soak: table, JSON, plot). Not in CI.
SOAK_MINUTES ?= 30
soak: deps all build/loadgen
	@scripts/bench_deps.sh
	/usr/bin/python3 tests/bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# Consumer drain rate next to psql \copy, same run.
bench-consumer: deps all
	/usr/bin/python3 tests/bench/bench_consumer.py $(BENCH_ARGS)

$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_REL) -c $< -o $@

$(ASAN)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(CFLAGS_ASAN) -c $< -o $@

$(REL)/$(PRODUCER): $(call objs,$(REL),$(PRODUCER_SRC) $(COMMON_SRC))
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(PKG_LIBS)

$(REL)/$(CONSUMER): $(call objs,$(REL),$(CONSUMER_SRC) $(COMMON_SRC))
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(PKG_LIBS)

$(REL)/$(IMPORT): $(call objs,$(REL),$(IMPORT_SRC) $(COMMON_SRC))
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(PKG_LIBS)

# Only the notifier links libcurl (its HTTP(S) deliveries).
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null)
$(REL)/notifier/%.o: CFLAGS_REL += $(CURL_CFLAGS)
$(ASAN)/notifier/%.o: CFLAGS_ASAN += $(CURL_CFLAGS)

$(REL)/$(NOTIFIER): $(call objs,$(REL),$(NOTIFIER_SRC) $(COMMON_SRC))
	@echo "  LD      $@"
	@$(CC) $^ -o $@ $(PKG_LIBS) $(CURL_LIBS)

$(ASAN)/$(NOTIFIER): $(call objs,$(ASAN),$(NOTIFIER_SRC) $(COMMON_SRC))
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS) $(CURL_LIBS)

$(ASAN)/$(PRODUCER): $(call objs,$(ASAN),$(PRODUCER_SRC) $(COMMON_SRC))
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS)

$(ASAN)/$(CONSUMER): $(call objs,$(ASAN),$(CONSUMER_SRC) $(COMMON_SRC))
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS)

$(ASAN)/$(IMPORT): $(call objs,$(ASAN),$(IMPORT_SRC) $(COMMON_SRC))
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS)

# Unit tests link the common code and the pure logic of the programs.
UNIT_LIB_SRC := $(COMMON_SRC) producer/ratelimit.c producer/breaker.c producer/http_frame.c \
                producer/xverdict.c \
                consumer/batchsize.c consumer/session.c consumer/archive.c import/csv.c \
                notifier/text.c
$(ASAN)/tests/unit/%.o: CFLAGS_ASAN += -Iproducer -Iconsumer -Iimport -Inotifier

$(ASAN)/tests/tools/%: $(ASAN)/tests/tools/%.o $(call objs,$(ASAN),$(COMMON_SRC))
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS)

$(ASAN)/tests/%: $(ASAN)/tests/unit/%.o $(call objs,$(ASAN),$(UNIT_LIB_SRC))
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"
	@$(CC) $(LDFLAGS_ASAN) $^ -o $@ $(PKG_LIBS) -lcmocka

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
