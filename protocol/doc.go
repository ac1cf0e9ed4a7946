// Package protocol holds Fabric's wire contract: the JSON types of
// ../shared/PROTOCOL.md, method names, error codes as sentinel errors, and the
// validation of every method's parameters.
//
// It is a leaf package: it imports nothing of Fabric's, so clients can use it
// without pulling in the server.
package protocol
