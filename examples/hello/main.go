// Command hello is an agent that uses no SDK at all: any program that reads
// its stdin and writes its stdout is a wasi-command agent. It greets its
// input: "world" becomes "hello, world".
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello.wasm ./examples/hello
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading stdin:", err) // a log line
		os.Exit(1)                                     // the task fails: exit_status
	}
	fmt.Printf("hello, %s\n", bytes.TrimSpace(in))
}
