//go:build wasip1

// Command goecho-extism is the Go-built echo of the comparison, for
// Extism: a reactor (go build -buildmode=c-shared) exporting "echo", with
// the few Extism kernel imports it needs declared here, as Extism's Go PDK
// declares them (the PDK itself is not served by the module proxy this
// project uses). It reads and writes as the PDK does: 8 bytes per host
// call, then the tail byte by byte.
package main

//go:wasmimport extism:host/env input_length
func inputLength() uint64

//go:wasmimport extism:host/env input_load_u64
func inputLoadU64(offset uint64) uint64

//go:wasmimport extism:host/env input_load_u8
func inputLoadU8(offset uint64) uint32

//go:wasmimport extism:host/env alloc
func alloc(n uint64) uint64

//go:wasmimport extism:host/env store_u64
func storeU64(offset, v uint64)

//go:wasmimport extism:host/env store_u8
func storeU8(offset uint64, v uint32)

//go:wasmimport extism:host/env output_set
func outputSet(offset, n uint64)

func input() []byte {
	n := inputLength()
	b := make([]byte, n)
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		v := inputLoadU64(i)
		for k := range uint64(8) {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for ; i < n; i++ {
		b[i] = byte(inputLoadU8(i))
	}
	return b
}

func output(b []byte) {
	n := uint64(len(b))
	out := alloc(n)
	i := uint64(0)
	for ; i+8 <= n; i += 8 {
		var v uint64
		for k := range uint64(8) {
			v |= uint64(b[i+k]) << (8 * k)
		}
		storeU64(out+i, v)
	}
	for ; i < n; i++ {
		storeU8(out+i, uint32(b[i]))
	}
	outputSet(out, n)
}

//go:wasmexport echo
func echo() int32 {
	output(input())
	return 0
}

func main() {}
