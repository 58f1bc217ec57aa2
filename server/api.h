/* REST API handlers (one function per route; routing is in http.c). */
#ifndef JZ_SERVER_API_H
#define JZ_SERVER_API_H

struct jz_req;

void jz_api_healthz(struct jz_req *r);
void jz_api_metrics(struct jz_req *r);
void jz_api_jobs_submit(struct jz_req *r);
void jz_api_jobs_list(struct jz_req *r);
void jz_api_jobs_get(struct jz_req *r);
void jz_api_jobs_cancel(struct jz_req *r);
void jz_api_jobs_log(struct jz_req *r);
void jz_api_jobs_events(struct jz_req *r);
void jz_api_jobs_artifacts(struct jz_req *r);
void jz_api_jobs_artifact_get(struct jz_req *r);
void jz_api_nodes(struct jz_req *r);
void jz_api_node_drain(struct jz_req *r);
void jz_api_node_resume(struct jz_req *r);
void jz_api_node_revoke(struct jz_req *r);
void jz_api_node_delete(struct jz_req *r);
void jz_api_admin_node_tokens(struct jz_req *r);
void jz_api_agent(struct jz_req *r);
void jz_api_plugins(struct jz_req *r);
void jz_api_whoami(struct jz_req *r);
void jz_api_admin_users_add(struct jz_req *r);
void jz_api_admin_users_list(struct jz_req *r);
void jz_api_usage(struct jz_req *r);
void jz_api_admin_credits_add(struct jz_req *r);

#endif
