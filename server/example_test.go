package server_test

import (
	"context"
	"os"
	"strings"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/server"
	"github.com/chimera-fabric/fabric/store"
)

// A stdio session: the framing follows the input (here one JSON message
// per line), and the session ends when the input does, once every request
// is answered.
func ExampleServer_ServeStdio() {
	ctx := context.Background()
	st := store.NewMemory()
	defer st.Close()
	eng, err := executor.NewWazero(executor.WazeroOptions{})
	if err != nil {
		panic(err)
	}
	defer eng.Close(ctx)
	sc, err := sched.New(sched.Config{Store: st, Engine: eng, Workers: 1})
	if err != nil {
		panic(err)
	}
	if err := sc.Start(ctx); err != nil {
		panic(err)
	}
	defer sc.Stop(ctx)

	srv := server.New(server.Config{Sched: sc})
	in := strings.NewReader(`{"jsonrpc": "2.0", "id": 1, "method": "agent.list"}` + "\n")
	if err := srv.ServeStdio(ctx, in, os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// {"jsonrpc":"2.0","id":1,"result":{"agents":[]}}
}
