package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// BatchCall is one element of a batch. Batch fills in Error, and decodes the
// result into Result when the call succeeded.
type BatchCall struct {
	Method string
	Params any // nil sends no params
	Result any // nil discards the result
	// Notify sends the element as a notification: no id, never answered.
	Notify bool

	// Error is set by Batch: a *protocol.Error when the server answered with
	// an error, or the error decoding the result.
	Error error
}

// Batch sends calls as one JSON-RPC batch (one WebSocket message) and waits
// for every answer. The server may answer the elements in any order; each is
// matched by its id. Batch returns an error only when the batch as a whole
// failed (encoding, the connection, ctx); the outcome of each element is in
// its Error. A batch of notifications only returns once it is written.
func (c *Client) Batch(ctx context.Context, calls []BatchCall) error {
	if len(calls) == 0 {
		return errors.New("client: empty batch; want at least one call")
	}
	reqs := make([]request, len(calls))
	ids := make([]uint64, len(calls))
	for i := range calls {
		calls[i].Error = nil
		reqs[i] = request{JSONRPC: "2.0", Method: calls[i].Method, Params: calls[i].Params}
		if !calls[i].Notify {
			ids[i] = c.nextID.Add(1)
			reqs[i].ID = ids[i]
		}
	}
	msg, err := json.Marshal(reqs)
	if err != nil {
		return fmt.Errorf("batch: encoding params: %w", err)
	}
	chans := make([]chan reply, len(calls))
	var registered []uint64
	unregister := func() {
		for _, id := range registered {
			c.unregister(id)
		}
	}
	for i, id := range ids {
		if id == 0 {
			continue
		}
		ch, err := c.register(id)
		if err != nil {
			unregister()
			return fmt.Errorf("batch: %w", err)
		}
		chans[i] = ch
		registered = append(registered, id)
	}
	if err := c.send(ctx, msg); err != nil {
		unregister()
		return fmt.Errorf("batch: %w", err)
	}
	for i, ch := range chans {
		if ch == nil {
			continue
		}
		select {
		case r := <-ch:
			if r.err != nil && !isRPCError(r.err) {
				unregister()
				return fmt.Errorf("batch: %w", r.err)
			}
			calls[i].Error = r.decode(calls[i].Method, calls[i].Result)
		case <-ctx.Done():
			unregister()
			return fmt.Errorf("batch: %w", ctx.Err())
		}
	}
	return nil
}
