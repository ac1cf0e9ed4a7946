package loadgen

import (
	"context"
	"testing"
)

// BenchmarkEchoRoundTrip is the floor under every JSON-RPC call: the bytes
// of a system.health request over a bare loopback WebSocket to EchoHandler
// and back, one at a time on one connection, client and server in this
// process (fabric bench --mode echo,health runs it beside fabricd's
// answers, out of process).
func BenchmarkEchoRoundTrip(b *testing.B) {
	srv, err := StartEchoServer("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	ec, err := dialEcho(ctx, srv.URL, "", 1)
	if err != nil {
		b.Fatal(err)
	}
	defer ec.close()
	b.ReportAllocs()
	b.SetBytes(int64(len(ec.payload)))
	for b.Loop() {
		if err := ec.roundTrip(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
