//! What an audit row says was done: every action Switchboard records, one name each.

use std::fmt;

/// An action the audit log records (its name, as stored, is [`AuditAction::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    ClientCreated,
    ClientOnboardLink,
    ClientRateSet,
    ClientHumanPauseSet,
    ClientResponderSet,
    ClientRulesSaved,
    ClientAiLinksSet,
    ConversationHandedBack,
    DataDeleted,
    InboxReplayed,
    IntegrationConnected,
    IntegrationDeauthorized,
    IntegrationDisconnected,
    IntegrationError,
    IntegrationNeedsReauth,
    IntegrationResubscribed,
    OAuthCompleted,
    UserCreated,
    UserPasswordChanged,
    VaultRotated,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::ClientCreated => "client.created",
            AuditAction::ClientOnboardLink => "client.onboard_link",
            AuditAction::ClientRateSet => "client.rate_set",
            AuditAction::ClientHumanPauseSet => "client.human_pause_set",
            AuditAction::ClientResponderSet => "client.responder_set",
            AuditAction::ClientRulesSaved => "client.rules_saved",
            AuditAction::ClientAiLinksSet => "client.ai_links_set",
            AuditAction::ConversationHandedBack => "conversation.handed_back",
            AuditAction::DataDeleted => "data.deleted",
            AuditAction::InboxReplayed => "inbox.replayed",
            AuditAction::IntegrationConnected => "integration.connected",
            AuditAction::IntegrationDeauthorized => "integration.deauthorized",
            AuditAction::IntegrationDisconnected => "integration.disconnected",
            AuditAction::IntegrationError => "integration.error",
            AuditAction::IntegrationNeedsReauth => "integration.needs_reauth",
            AuditAction::IntegrationResubscribed => "integration.resubscribed",
            AuditAction::OAuthCompleted => "oauth.completed",
            AuditAction::UserCreated => "user.created",
            AuditAction::UserPasswordChanged => "user.password_changed",
            AuditAction::VaultRotated => "vault.rotated",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
