package onnx

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/flextok-sdk/flextok/internal/tempfile"
	pb "github.com/flextok-sdk/flextok/native/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// MaxInline is the largest model Marshal accepts: protobuf messages are limited to 2 GiB, and
// a model close to that is better saved with external data (Save).
const MaxInline = 1 << 30

// Marshal returns the model as one protobuf message, for models under MaxInline bytes.
func Marshal(m *pb.ModelProto) ([]byte, error) {
	if n := proto.Size(m); n > MaxInline {
		return nil, fmt.Errorf("flextok/onnx: model of %d bytes is over %d: save it with external data", n, MaxInline)
	}
	return proto.Marshal(m)
}

// externalThreshold is the size from which Save moves an initializer to the data file.
const externalThreshold = 1024

// Save writes m as dir/name (the graph) and dir/name.data (every initializer of 1 KiB or
// more, 64-byte aligned, as ONNX external data), so models of any size load. It returns the
// graph's path. Both files are written to temporary names and renamed into place, so a reader
// never sees a partial model. Save moves the initializers' bytes out of m (m keeps the
// references to the data file).
func Save(m *pb.ModelProto, dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	path := filepath.Join(dir, name)
	dataName := name + ".data"
	df, err := tempfile.Create(dir, "."+dataName+".tmp")
	if err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	defer os.Remove(df.Name()) // no-op after the rename
	w := bufio.NewWriterSize(df, 1<<20)
	var off int64
	for _, t := range m.GetGraph().GetInitializer() {
		if len(t.RawData) < externalThreshold {
			continue
		}
		if pad := (64 - off%64) % 64; pad > 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				df.Close()
				return "", fmt.Errorf("flextok/onnx: %w", err)
			}
			off += pad
		}
		if _, err := w.Write(t.RawData); err != nil {
			df.Close()
			return "", fmt.Errorf("flextok/onnx: %w", err)
		}
		t.ExternalData = []*pb.StringStringEntryProto{
			{Key: ptr("location"), Value: ptr(dataName)},
			{Key: ptr("offset"), Value: ptr(strconv.FormatInt(off, 10))},
			{Key: ptr("length"), Value: ptr(strconv.Itoa(len(t.RawData)))},
		}
		t.DataLocation = ptr(pb.TensorProto_EXTERNAL)
		off += int64(len(t.RawData))
		t.RawData = nil
	}
	if err := w.Flush(); err != nil {
		df.Close()
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := df.Close(); err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	graph, err := proto.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	gf, err := tempfile.Create(dir, "."+name+".tmp")
	if err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	defer os.Remove(gf.Name())
	if _, err := gf.Write(graph); err != nil {
		gf.Close()
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := gf.Close(); err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := os.Rename(df.Name(), filepath.Join(dir, dataName)); err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	if err := os.Rename(gf.Name(), path); err != nil {
		return "", fmt.Errorf("flextok/onnx: %w", err)
	}
	return path, nil
}
