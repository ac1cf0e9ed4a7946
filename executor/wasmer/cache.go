//go:build wasmer

package wasmer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"github.com/chimera-fabric/fabric/protocol"
)

// The compiled artifacts of Options.CacheDir, so that a restarted server
// does not compile its agents again (Cranelift takes seconds on a Go agent;
// loading its artifact, tens of milliseconds). A file is named by a hash of
// everything the artifact depends on: the instrumented module, the compiler,
// the wasmer library, the worker protocol and the CPU's features. It is
// trusted as compiled code is: whoever can write the directory can run code
// in the workers, as with the wazero engine's cache.

// wasmerLibrary names the wasmer library the artifacts come from.
const wasmerLibrary = "wasmer-go v1.0.4 (wasmer 2.0.0-rc2)"

// cpuFeatures is what the host's CPU offers, so that an artifact compiled for
// one CPU is never loaded on another (Cranelift uses what it finds).
var cpuFeatures = func() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("flags")) || bytes.HasPrefix(line, []byte("Features")) {
			return runtime.GOARCH + ":" + string(line)
		}
	}
	return runtime.GOARCH
}()

// cachePath is the cache file of an instrumented module.
func (e *Engine) cachePath(wasm []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{wasm, []byte(e.opts.Compiler), []byte(wasmerLibrary),
		[]byte(fmt.Sprint(protocolVersion)), []byte(cpuFeatures)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return filepath.Join(e.opts.CacheDir, hex.EncodeToString(h.Sum(nil))+".wasmer")
}

// artifactFor compiles ins (after validating original) or, with a cache,
// loads its artifact from there; either way a worker holds it under key.
func (e *Engine) artifactFor(ctx context.Context, key string, ins *instrumented, original []byte, closed *atomic.Bool) ([]byte, error) {
	if e.opts.CacheDir == "" {
		return e.compileArtifact(ctx, key, ins.Wasm, original, false, closed)
	}
	path := e.cachePath(ins.Wasm)
	if art, err := os.ReadFile(path); err == nil {
		err := e.loadArtifact(ctx, key, art, original, closed)
		if err == nil {
			e.log.Debug().Str("path", path).Msg("compiled module loaded from the cache")
			return art, nil
		}
		if errors.Is(err, protocol.ErrInvalidModule) || ctx.Err() != nil || e.isClosing() {
			return nil, err
		}
		e.log.Warn().Str("path", path).Err(err).Msg("dropping a cached module that does not load")
		_ = os.Remove(path)
	}
	art, err := e.compileArtifact(ctx, key, ins.Wasm, original, false, closed)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, art); err != nil {
		e.log.Warn().Err(err).Msg("cannot cache a compiled module")
	}
	return art, nil
}

// loadArtifact has a worker validate original and load art under key. A
// module wasmer refuses is protocol.ErrInvalidModule; an artifact that does
// not load is another error.
func (e *Engine) loadArtifact(ctx context.Context, key string, art, original []byte, closed *atomic.Bool) error {
	p, err := e.pool.acquire(ctx, e.closing)
	if err != nil {
		if errors.Is(err, errPoolClosed) || e.isClosing() {
			return protocol.Errorf(protocol.ErrShuttingDown, "the wasmer engine is closed")
		}
		return fmt.Errorf("waiting for a wasmer worker to load the module: %w", err)
	}
	req := loadRequest{Key: key, Artifact: art, Validate: original}
	t, payload, err := p.call(ctx, e.closing, msgLoad, req.encode())
	if err != nil {
		e.pool.discard(p, err)
		return fmt.Errorf("loading the cached module: %w", err)
	}
	var reply loadedReply
	if t != msgLoaded || reply.decode(payload) != nil {
		e.pool.discard(p, fmt.Errorf("a load request got a frame of type %d", t))
		return errors.New("the wasmer worker answered a load request with a malformed frame")
	}
	if reply.Invalid != "" {
		e.pool.release(p)
		return protocol.Errorf(protocol.ErrInvalidModule, "%s", reply.Invalid)
	}
	if reply.Err != "" {
		e.pool.release(p)
		return errors.New(reply.Err)
	}
	p.loaded[key] = closed
	e.pool.release(p)
	return nil
}

// writeFileAtomic writes b to path through a temporary file, so that a
// reader never sees half an artifact.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
