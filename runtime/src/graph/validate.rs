//! The checks [`GraphBuilder::build`](super::GraphBuilder::build) runs, in
//! order: names, edge endpoints and types, dangling nodes, cycles.

use std::collections::HashMap;

use super::{EdgeSpec, NodeKind, NodeSpec, OutputSpec, ResolvedEdge};
use crate::error::GraphError;

pub(super) fn validate(
    nodes: &[NodeSpec],
    edges: &[EdgeSpec],
) -> Result<Vec<ResolvedEdge>, GraphError> {
    if nodes.is_empty() {
        return Err(GraphError::Empty);
    }
    let mut index = HashMap::new();
    for (position, node) in nodes.iter().enumerate() {
        if index.insert(&*node.name, position).is_some() {
            return Err(GraphError::DuplicateNode(node.name.to_string()));
        }
    }
    let mut ports = vec![0usize; nodes.len()];
    let mut resolved = Vec::with_capacity(edges.len());
    for edge in edges {
        let (from, to) = endpoints(&index, edge)?;
        check_edge(&nodes[from], &nodes[to], edge)?;
        resolved.push(ResolvedEdge {
            from,
            to,
            port: ports[to],
        });
        ports[to] += 1;
    }
    check_dangling(nodes, &resolved)?;
    check_acyclic(nodes, &resolved)?;
    Ok(resolved)
}

fn endpoints(index: &HashMap<&str, usize>, edge: &EdgeSpec) -> Result<(usize, usize), GraphError> {
    let lookup = |name: &str| {
        index
            .get(name)
            .copied()
            .ok_or_else(|| GraphError::UnknownNode {
                from: edge.from.clone(),
                to: edge.to.clone(),
                missing: name.to_string(),
            })
    };
    Ok((lookup(&edge.from)?, lookup(&edge.to)?))
}

fn check_edge(from: &NodeSpec, to: &NodeSpec, edge: &EdgeSpec) -> Result<(), GraphError> {
    if from.kind == NodeKind::Sink {
        return Err(GraphError::OutOfSink {
            from: edge.from.clone(),
            to: edge.to.clone(),
        });
    }
    if to.kind == NodeKind::Source {
        return Err(GraphError::IntoSource {
            from: edge.from.clone(),
            to: edge.to.clone(),
        });
    }
    for node_type in [from.output, to.input].into_iter().flatten() {
        if node_type.id != edge.record.id {
            return Err(GraphError::TypeMismatch {
                from: edge.from.clone(),
                to: edge.to.clone(),
                edge: edge.record.name,
                node: node_type.name,
            });
        }
    }
    Ok(())
}

fn check_dangling(nodes: &[NodeSpec], edges: &[ResolvedEdge]) -> Result<(), GraphError> {
    for (position, node) in nodes.iter().enumerate() {
        let has_input = edges.iter().any(|edge| edge.to == position);
        let has_output = edges.iter().any(|edge| edge.from == position);
        if node.kind != NodeKind::Source && !has_input {
            return Err(GraphError::NoInput(node.name.to_string()));
        }
        if node.kind != NodeKind::Sink && !has_output && !node.output_optional {
            return Err(GraphError::NoOutput(node.name.to_string()));
        }
    }
    Ok(())
}

/// Depth-first search with three colours; a grey node reached again closes a
/// cycle, which is reported from that node on.
fn check_acyclic(nodes: &[NodeSpec], edges: &[ResolvedEdge]) -> Result<(), GraphError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; nodes.len()];
    for start in 0..nodes.len() {
        if colour[start] != Colour::White {
            continue;
        }
        // Stack of (node, next edge index to look at); `path` mirrors it.
        let mut stack = vec![(start, 0usize)];
        colour[start] = Colour::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let successor = edges[*next..].iter().position(|edge| edge.from == node);
            match successor {
                Some(offset) => {
                    let edge = edges[*next + offset];
                    *next += offset + 1;
                    match colour[edge.to] {
                        Colour::White => {
                            colour[edge.to] = Colour::Grey;
                            stack.push((edge.to, 0));
                        }
                        Colour::Grey => {
                            let begin = stack.iter().position(|&(n, _)| n == edge.to).unwrap_or(0);
                            let cycle = stack[begin..]
                                .iter()
                                .map(|&(n, _)| nodes[n].name.to_string());
                            return Err(GraphError::Cycle(cycle.collect()));
                        }
                        Colour::Black => {}
                    }
                }
                None => {
                    colour[node] = Colour::Black;
                    stack.pop();
                }
            }
        }
    }
    Ok(())
}

/// Every described output names a node that emits its record type.
pub(super) fn check_outputs(nodes: &[NodeSpec], outputs: &[OutputSpec]) -> Result<(), GraphError> {
    for output in outputs {
        let described = format!("output {} of `{}`", output.port, output.node);
        let Some(node) = nodes.iter().find(|node| node.name == output.node) else {
            return Err(GraphError::UnknownNode {
                from: output.node.to_string(),
                to: described,
                missing: output.node.to_string(),
            });
        };
        match node.output {
            Some(emits) if emits.id == output.record.id => {}
            Some(emits) => {
                return Err(GraphError::TypeMismatch {
                    from: output.node.to_string(),
                    to: described,
                    edge: output.record.name,
                    node: emits.name,
                })
            }
            None => {
                return Err(GraphError::OutOfSink {
                    from: output.node.to_string(),
                    to: described,
                })
            }
        }
    }
    Ok(())
}
