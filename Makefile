# Fabric's commands. `make test` is what CI runs (.ci/run).
GO        ?= go
BIN       := bin
AGENTS    := $(BIN)/agents
EXAMPLES  := $(filter-out reactor,$(notdir $(patsubst %/,%,$(dir $(wildcard examples/*/main.go)))))
LISTEN    ?= 127.0.0.1:7420
DATA      ?= ./fabric-data

.PHONY: all build agents run demo test test-wasmer-race test-short check bench clean

all: build agents

build:
	$(GO) build -o $(BIN)/fabricd ./cmd/fabricd
	$(GO) build -o $(BIN)/fabric ./cmd/fabric

# The example agents, built with the standard Go toolchain for wasip1.
agents:
	@mkdir -p $(AGENTS)
	@for a in $(EXAMPLES); do \
		echo "agent $$a"; \
		GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 $(GO) build -trimpath -o $(AGENTS)/$$a.wasm ./examples/$$a || exit 1; \
	done
	@echo "agent reactor"
	@GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 $(GO) build -trimpath -buildmode=c-shared -o $(AGENTS)/reactor.wasm ./examples/reactor

# Start fabricd on its defaults with the example agents registered.
run: build agents
	@echo "fabricd on ws://$(LISTEN)/rpc with agents: $(EXAMPLES) reactor"
	@echo "next, in another terminal:  $(BIN)/fabric task submit echo '{\"hello\":\"fabric\"}' --wait"
	$(BIN)/fabricd serve --listen $(LISTEN) --data $(DATA) --agents $(AGENTS)

# A short mixed workload through the real API, on an in-process fabricd.
demo: build agents
	$(BIN)/fabricd demo --agents $(AGENTS)

# Everything CI checks: the race detector over every package, then the wasmer
# engine (cgo; its library ships inside the Go module): its conformance suite
# and fabricd end to end on it. The wasmer run skips -race: its guests run in
# worker processes, and the race detector over cgo multiplies its time by
# five (make test-wasmer-race runs it).
test:
	$(GO) vet ./...
	$(GO) vet -tags wasmer ./executor/wasmer/ ./cmd/fabricd/
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) test -count=1 -timeout 10m -tags wasmer ./executor/wasmer/
	$(GO) test -count=1 -timeout 10m -tags wasmer -run Wasmer ./cmd/fabricd/

test-wasmer-race:
	$(GO) test -race -count=1 -timeout 20m -tags wasmer ./executor/wasmer/ ./cmd/fabricd/

test-short:
	$(GO) test -short -count=1 ./...

# Formatting, vet and tidiness; fails on any diff.
check:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt: run gofmt -w ."; exit 1)
	$(GO) vet ./...
	$(GO) vet -tags wasmer ./...
	$(GO) mod tidy -diff

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
