//! The response body type: a whole buffer, or a channel that a relay task feeds (SSE).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// An SSE body fed by a channel; it ends when the sender is dropped.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub type ResponseBody = Either<Full<Bytes>, ChannelBody>;
pub type Response = http::Response<ResponseBody>;

pub fn full(b: impl Into<Bytes>) -> ResponseBody {
    Either::Left(Full::new(b.into()))
}

pub fn empty() -> ResponseBody {
    Either::Left(Full::new(Bytes::new()))
}
