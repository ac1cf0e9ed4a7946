package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/protocol"
)

// The examples talk to a small stand-in for fabricd (see exampleServer) so
// that they run anywhere; against fabricd the calls are the same.

func Example() {
	srv := exampleServer()
	defer srv.Close()
	ctx := context.Background()

	c, err := client.Dial(ctx, wsURL(srv), client.Options{Token: "s3cret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var h protocol.Health
	if err := c.Call(ctx, protocol.MethodSystemHealth, nil, &h); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("status:", h.Status)

	// A JSON-RPC error is a *protocol.Error, compared by code.
	err = c.Call(ctx, protocol.MethodTaskGet, protocol.TaskIDParams{TaskID: "nope"}, nil)
	fmt.Println("not found:", errors.Is(err, protocol.ErrNotFound), err)
	// Output:
	// status: ok
	// not found: true not found: task "nope" does not exist
}

func ExampleClient_Batch() {
	srv := exampleServer()
	defer srv.Close()
	ctx := context.Background()
	c, err := client.Dial(ctx, wsURL(srv), client.Options{Token: "s3cret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var h protocol.Health
	calls := []client.BatchCall{
		{Method: protocol.MethodSystemHealth, Result: &h},
		{Method: protocol.MethodTaskGet, Params: protocol.TaskIDParams{TaskID: "nope"}},
	}
	if err := c.Batch(ctx, calls); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(h.Status, calls[0].Error)
	fmt.Println(calls[1].Error)
	// Output:
	// ok <nil>
	// not found: task "nope" does not exist
}

func ExampleClient_Notifications() {
	srv := exampleServer()
	defer srv.Close()
	ctx := context.Background()
	c, err := client.Dial(ctx, wsURL(srv), client.Options{Token: "s3cret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	var sub protocol.SubscriptionResult
	if err := c.Call(ctx, protocol.MethodTaskSubscribe, protocol.SubscribeParams{TaskIDs: []string{"t1"}}, &sub); err != nil {
		fmt.Println(err)
		return
	}
	for n := range c.Notifications() {
		ev, err := decodeEvent(n)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(n.Method, ev.SubscriptionID == sub.SubscriptionID, ev.TaskID, ev.State)
		if ev.State.Terminal() {
			break
		}
	}
	// Output:
	// task.event true t1 running
	// task.event true t1 succeeded
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/rpc" }
