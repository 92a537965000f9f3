//! The Graph API as a cluster node may use it: no call for a Page this node does not own, and none once its
//! lease has run out by its own clock (which ends before the database's lease does). What is left is the
//! window of a process paused between this check and its HTTP call.

use std::sync::Arc;

use async_trait::async_trait;
use switchboard_actors::{
    AccessToken, Channel, DeliveredMessage, GraphApi, GraphFailure, OutgoingMessage, PageId, SendOk,
};

use crate::ownership::Owned;

pub struct GatedGraph {
    graph: Arc<dyn GraphApi>,
    owned: Arc<Owned>,
}

impl GatedGraph {
    pub fn new(graph: Arc<dyn GraphApi>, owned: Arc<Owned>) -> Self {
        Self { graph, owned }
    }

    fn check(&self, page: &PageId) -> Result<(), GraphFailure> {
        if self.owned.may_act(page) {
            Ok(())
        } else {
            Err(GraphFailure {
                message: "this node does not own the Page (or its lease ran out); the call was not made".to_owned(),
                ..GraphFailure::default()
            })
        }
    }
}

#[async_trait]
impl GraphApi for GatedGraph {
    async fn send_message(&self, token: &AccessToken, message: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        self.check(&message.page_id)?;
        self.graph.send_message(token, message).await
    }

    async fn pass_thread_control(
        &self,
        token: &AccessToken,
        page: &PageId,
        recipient: &str,
        target_app_id: &str,
    ) -> Result<(), GraphFailure> {
        self.check(page)?;
        self.graph.pass_thread_control(token, page, recipient, target_app_id).await
    }

    async fn conversation(
        &self,
        token: &AccessToken,
        page: &PageId,
        channel: Channel,
        recipient: &str,
    ) -> Result<Option<String>, GraphFailure> {
        self.check(page)?;
        self.graph.conversation(token, page, channel, recipient).await
    }

    async fn sent_in(
        &self,
        token: &AccessToken,
        page: &PageId,
        conversation: &str,
        recipient: &str,
    ) -> Result<Vec<DeliveredMessage>, GraphFailure> {
        self.check(page)?;
        self.graph.sent_in(token, page, conversation, recipient).await
    }
}
