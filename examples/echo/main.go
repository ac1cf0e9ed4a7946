// Command echo is the smallest agent: its output is its input, byte for byte.
package main

import "github.com/chimera-fabric/fabric/guest"

func main() {
	guest.Run(func(in []byte) ([]byte, error) { return in, nil })
}
