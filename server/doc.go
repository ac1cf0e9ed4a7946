// Package server serves Fabric's JSON-RPC 2.0 API (../PROTOCOL.md,
// docs/protocol.md) over a WebSocket (Handler: GET /rpc, with /healthz,
// /readyz and /metrics) and over stdio (ServeStdio). Both transports are
// small adapters that read and write whole messages; one session type runs
// the conversation on either.
//
// Files, one concern each:
//
//	wire.go     JSON-RPC messages: parsing (requests, notifications, batches, the
//	            -32700 and -32600 cases; members read with internal/jsonscan),
//	            ids kept as raw JSON, replies written around the encoded result
//	encode.go   tasks, task events and submit answers appended as JSON without
//	            reflection (json.Marshal's bytes exactly)
//	frame.go    stdio framing: detection, newline-delimited JSON, Content-Length
//	session.go  one connection: dispatch with an in-flight cap (on the reader
//	            for methods that cannot wait), batch regrouping, writing, the end
//	            of a session
//	outbox.go   the bounded outbound queue, grown on demand, and the right to write
//	methods.go  the method table: params decoded with protocol.DecodeParams, calls
//	            into the scheduler, errors converted once with protocol.AsError
//	subs.go     subscriptions: task events and kpi.report tickers, per connection
//	ws.go       the HTTP handler, the bearer token, the WebSocket transport, and
//	            the connection under it that holds the reader's answers back
//	            to write them together (corkConn)
//	stdio.go    ServeStdio and the stdio transport
//	server.go   Config, New, Shutdown, the sessions' registry
//
// # Why not sourcegraph/jsonrpc2 on the server side
//
// The module depends on github.com/sourcegraph/jsonrpc2 v0.2.3, and the plan
// was to close its gaps with a thin ObjectStream adapter. Reading its source
// showed that the adapter would have had to take over nearly everything:
//
//   - Its ID is a uint64 or a string. An id of null is read as "no id" (a
//     notification, left unanswered), -1 is re-encoded as
//     18446744073709551615, 1.5 fails to decode. Echoing ids exactly would
//     have meant rewriting every id to a synthetic one and back, decoding and
//     re-encoding each response.
//   - It has no batches: an array fails to decode, and any read error (a
//     parse error too) closes the connection instead of answering -32700.
//   - Request.UnmarshalJSON decodes params into interface{} and re-encodes
//     them: three copies of a 64 MiB module upload, and the text the client
//     sent is not the text the method decodes.
//   - Handlers run on the read goroutine (or, with AsyncHandler, on
//     goroutines nobody waits for); NewConn's two goroutines cannot be
//     joined; and at the end of input Conn cancels the handlers' context, so
//     requests in flight could not be answered after stdin ends.
//
// What would have remained of it is a read loop and an envelope, so the
// server has its own (wire.go, session.go: about 500 lines). The library
// serves where it fits: as an independent client in the interop tests
// (its VSCodeObjectCodec checks the Content-Length framing, its plain
// stream the newline-delimited one).
package server
