package main

// WebSocket framing (RFC 6455) as far as the generator needs it: reading the server's frames
// (unmasked, possibly fragmented) and appending masked client frames to a buffer, so that many
// frames leave in one write.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// appendFrame appends one final frame of `op` with `payload` masked under `mask`.
func appendFrame(b []byte, op byte, mask [4]byte, payload []byte) []byte {
	n := len(payload)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range b[start:] {
		b[start+i] ^= mask[i&3]
	}
	return b
}

var errFrame = errors.New("bad frame")

// readFrame reads one message (a data frame and its continuations, or one control frame) into
// `buf`; returns its opcode and payload.
func readFrame(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	var op byte
	for {
		h0, err := r.ReadByte()
		if err != nil {
			return 0, buf, err
		}
		h1, err := r.ReadByte()
		if err != nil {
			return 0, buf, err
		}
		n := uint64(h1 & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				return 0, buf, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(r, ext[:]); err != nil {
				return 0, buf, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > 64<<20 {
			return 0, buf, errFrame
		}
		var mask [4]byte
		masked := h1&0x80 != 0
		if masked {
			if _, err := io.ReadFull(r, mask[:]); err != nil {
				return 0, buf, err
			}
		}
		frameOp := h0 & 0x0f
		if frameOp >= opClose {
			// A control frame may arrive between fragments; return it alone, whole.
			ctl := make([]byte, n)
			if _, err := io.ReadFull(r, ctl); err != nil {
				return 0, buf, err
			}
			unmask(ctl, mask, masked)
			return frameOp, ctl, nil
		}
		if frameOp != opContinuation {
			op = frameOp
			buf = buf[:0]
		}
		start := len(buf)
		for uint64(cap(buf)-start) < n {
			buf = append(buf[:cap(buf)], 0)[:start]
		}
		buf = buf[:start+int(n)]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return 0, buf, err
		}
		unmask(buf[start:], mask, masked)
		if h0&0x80 != 0 {
			return op, buf, nil
		}
	}
}

func unmask(b []byte, mask [4]byte, masked bool) {
	if !masked {
		return
	}
	for i := range b {
		b[i] ^= mask[i&3]
	}
}
