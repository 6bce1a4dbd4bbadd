// Package ui owns the live terminal UI of vxtrace: the path, flows and drops
// panes, the detail view of a packet's journey, and the status bar.
//
// Data comes in through the Feed interface so the UI never imports BPF code
// and can be driven by fakes in tests. The models (model*.go) hold the data
// and never import tview or tcell; the views (view*.go) draw snapshots of the
// models on a ticker, with one redraw per tick, never one per packet.
package ui
