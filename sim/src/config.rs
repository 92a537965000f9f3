//! What the stand-in pretends to be: one Meta app, its fake users and their Pages, and its rate limits.
//! Everything here can be given at start (a JSON file or flags) and changed at run time through the
//! control API (`POST /_sim/config`).

use serde::{Deserialize, Serialize};

/// The stand-in's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// The Meta app's id (`client_id` in OAuth).
    pub app_id: String,
    /// The app secret: checks `client_secret`, `appsecret_proof`, and signs webhooks.
    pub app_secret: String,
    /// The app's "Valid OAuth redirect URIs" (matched exactly, as in Strict Mode).
    pub redirect_uris: Vec<String>,
    /// Reject Graph calls without a valid `appsecret_proof` ("Require App Secret" switch).
    pub require_appsecret_proof: bool,
    /// Send API calls per second allowed per Page or Instagram account; 0 means unlimited.
    pub rate_limit_per_page: u32,
    /// Page size of `/me/accounts` (small values exercise paging).
    pub accounts_page_size: usize,
    /// How long an authorization code may be redeemed.
    pub code_ttl_secs: u64,
    /// How long a "timeout" fault holds a request before answering 500.
    pub timeout_hold_secs: u64,
    /// The fake Facebook users; the OAuth dialog logs in as `active_user`.
    pub users: Vec<SimUser>,
    /// The id of the user the dialog acts for.
    pub active_user: String,
    /// Sent messages, calls and errors kept for inspection (counters are always kept).
    pub max_recorded: usize,
    /// The API key the chat completions stand-in (`POST /v1/chat/completions`) requires as
    /// `Authorization: Bearer <key>`. `None` or empty: any request is accepted.
    pub ai_key: Option<String>,
}

/// A fake Facebook user (the person who clicks "Continue").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimUser {
    /// App-scoped user id, as `debug_token` and `signed_request` report it.
    pub id: String,
    pub name: String,
    pub pages: Vec<SimPage>,
}

/// A Page the fake user manages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimPage {
    pub id: String,
    pub name: String,
    /// The linked Instagram professional account, if any.
    #[serde(default)]
    pub instagram_business_account: Option<String>,
    #[serde(default = "default_tasks")]
    pub tasks: Vec<String>,
}

fn default_tasks() -> Vec<String> {
    ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE", "MESSAGING"].map(String::from).to_vec()
}

/// The stand-in's Meta app id unless configured otherwise.
pub const DEFAULT_APP_ID: u64 = 1_234_567_890;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            app_id: DEFAULT_APP_ID.to_string(),
            app_secret: "fixture-app-secret-do-not-use".to_owned(),
            redirect_uris: Vec::new(),
            require_appsecret_proof: true,
            rate_limit_per_page: 0,
            accounts_page_size: 25,
            code_ttl_secs: 600,
            timeout_hold_secs: 30,
            users: vec![SimUser {
                id: "10215241773831025".to_owned(),
                name: "Pat Tester".to_owned(),
                pages: vec![
                    SimPage {
                        id: "104711112233445".to_owned(),
                        name: "Woodstock Outlet".to_owned(),
                        instagram_business_account: Some("17841405822304914".to_owned()),
                        tasks: default_tasks(),
                    },
                    SimPage {
                        id: "209822223344556".to_owned(),
                        name: "Rural King".to_owned(),
                        instagram_business_account: None,
                        tasks: default_tasks(),
                    },
                ],
            }],
            active_user: "10215241773831025".to_owned(),
            max_recorded: 1_000_000,
            ai_key: None,
        }
    }
}

impl SimConfig {
    pub fn user(&self, id: &str) -> Option<&SimUser> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The Page with this id, or the Page whose Instagram account has this id, across all users.
    pub fn page(&self, id: &str) -> Option<&SimPage> {
        self.users
            .iter()
            .flat_map(|u| &u.pages)
            .find(|p| p.id == id || p.instagram_business_account.as_deref() == Some(id))
    }
}

/// The scopes Switchboard asks for by default; the dialog grants them unless the user unticks one.
pub const KNOWN_SCOPES: &[&str] = &[
    "pages_show_list",
    "pages_messaging",
    "pages_manage_metadata",
    "pages_read_engagement",
    "instagram_basic",
    "instagram_manage_messages",
    "business_management",
];
